/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: private files: the checks that make a file ours to trust (the
 * rules and why are in privfile.h).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privfile.h"

/* DIR (its path, for messages) may hold or lead to a private file of
 * ours: owned by us or root, and nobody else can add, rename or remove
 * its entries except under the sticky bit's rule (only an entry's owner
 * may rename or remove it).
 */
static int
privfile_dir_check (int fd, const char *path, const char *dir,
                    char **errmsg)
{
  struct stat st;
  uid_t uid = geteuid ();
  const char *who;

  if (fstat (fd, &st) == -1) {
    if (asprintf (errmsg, "%s: directory %s: %m", path, dir) == -1)
      *errmsg = NULL;
    return -1;
  }
  if (st.st_uid != uid && st.st_uid != 0) {
    if (asprintf (errmsg, "%s: directory %s is owned by uid %u, not by "
                  "this process (uid %u) or root: its owner could swap the "
                  "file", path, dir, (unsigned) st.st_uid,
                  (unsigned) uid) == -1)
      *errmsg = NULL;
    return -1;
  }
  if ((st.st_mode & S_ISVTX) == 0 &&
      (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    who = st.st_mode & S_IWOTH ? "others" : "group";
    if (asprintf (errmsg, "%s: directory %s (mode %o) is writable by %s "
                  "and not sticky: they could swap the file; use a "
                  "directory only this user may write to", path, dir,
                  (unsigned) (st.st_mode & 07777), who) == -1)
      *errmsg = NULL;
    return -1;
  }
  return 0;
}

int
privfile_dir_open (const char *path, char **name, char **errmsg)
{
  char *copy = NULL, *real = NULL, *slash, *p;
  const char *dir;
  int fd = -1, next;

  *errmsg = NULL;
  *name = NULL;
  if (path[0] != '/') {
    if (asprintf (errmsg, "%s: not an absolute path", path) == -1)
      *errmsg = NULL;
    return -1;
  }
  copy = strdup (path);
  if (copy == NULL)
    goto nomem;
  slash = strrchr (copy, '/');
  if (slash[1] == '\0') {
    if (asprintf (errmsg, "%s: names a directory, not a file", path) == -1)
      *errmsg = NULL;
    goto err;
  }
  *name = strdup (slash + 1);
  if (*name == NULL)
    goto nomem;
  if (slash == copy)
    dir = "/";
  else {
    *slash = '\0';
    dir = copy;
  }
  real = realpath (dir, NULL);
  if (real == NULL) {
    if (errno == ENOMEM)
      goto nomem;
    if (asprintf (errmsg, "%s: directory %s: %s", path, dir,
                  errno == ENOENT || errno == ENOTDIR
                  ? "not an existing directory" : strerror (errno)) == -1)
      *errmsg = NULL;
    goto err;
  }

  /* From / down, each directory opened from its checked parent, so what
   * is checked is what the path leads to.  O_PATH: search permission is
   * all it takes, and nothing is read.
   */
  fd = open ("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1) {
    if (asprintf (errmsg, "%s: directory /: %m", path) == -1)
      *errmsg = NULL;
    goto err;
  }
  if (privfile_dir_check (fd, path, "/", errmsg) == -1)
    goto err;
  p = real + 1;
  while (*p != '\0') {
    char *end = strchr (p, '/');

    if (end)
      *end = '\0';
    next = openat (fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next == -1) {
      /* Changed since realpath: a symlink (ELOOP, ENOTDIR) or gone. */
      if (asprintf (errmsg, "%s: directory %s: %m", path, real) == -1)
        *errmsg = NULL;
      goto err;
    }
    close (fd);
    fd = next;
    if (privfile_dir_check (fd, path, real, errmsg) == -1)
      goto err;
    if (end == NULL)
      break;
    *end = '/';
    p = end + 1;
  }
  free (real);
  free (copy);
  return fd;

 nomem:
  *errmsg = NULL;
 err:
  if (fd >= 0)
    close (fd);
  free (real);
  free (copy);
  free (*name);
  *name = NULL;
  return -1;
}

int
privfile_open (int dirfd, const char *name, const char *path, int flags,
               char **errmsg)
{
  struct stat st;
  uid_t uid = geteuid ();
  int fd;

  *errmsg = NULL;
  /* O_NONBLOCK: a FIFO put in the file's place must not hang the open
   * (it is refused below); it changes nothing for a regular file.
   */
  fd = openat (dirfd, name,
               flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd == -1 && errno == ENOENT)
    return PRIVFILE_MISSING;
  if (fd == -1 && errno == ELOOP) {
    if (asprintf (errmsg, "%s is a symbolic link: refusing to follow it "
                  "(whoever made the link chose the file)", path) == -1)
      *errmsg = NULL;
    return -1;
  }
  if (fd == -1 || fstat (fd, &st) == -1) {
    if (asprintf (errmsg, "%s: %m", path) == -1)
      *errmsg = NULL;
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    if (asprintf (errmsg, "%s is not a regular file", path) == -1)
      *errmsg = NULL;
    goto err;
  }
  if (st.st_uid != uid) {
    if (asprintf (errmsg, "%s is owned by uid %u, not by this process "
                  "(uid %u): its owner could have written it", path,
                  (unsigned) st.st_uid, (unsigned) uid) == -1)
      *errmsg = NULL;
    goto err;
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    if (asprintf (errmsg, "%s: mode %o gives group or others access: "
                  "it must be 0600, as this process makes it", path,
                  (unsigned) (st.st_mode & 07777)) == -1)
      *errmsg = NULL;
    goto err;
  }
  if (st.st_nlink != 1) {
    if (asprintf (errmsg, "%s has %lu names (hard links): another name "
                  "could be in a directory others may write to", path,
                  (unsigned long) st.st_nlink) == -1)
      *errmsg = NULL;
    goto err;
  }
  return fd;

 err:
  if (fd >= 0)
    close (fd);
  return -1;
}
