/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: private files, which only this process's user (or root) can have
 * written: the async filter's store file, read by nbdkit and by abdctl.
 *
 * A file we trust to say what to write to a device must not be one that
 * another local user could have made, changed or swapped.  A file is
 * private when:
 *
 *   - it is reached without following a symbolic link at its last
 *     component (O_NOFOLLOW), and is a regular file with one name (a
 *     hard link made elsewhere could be a file someone else named);
 *   - it is owned by the effective user of this process;
 *   - its mode has no group or other permission bit;
 *   - its directory, and every directory above it up to /, is owned by
 *     this user or root, and is writable by neither group nor others,
 *     unless it is sticky (/tmp, /dev/shm): there only a file's owner
 *     (and the directory's, ours or root) may rename or remove an entry,
 *     so nobody else can swap our file or a directory of ours for their
 *     own.
 *
 * The directories checked are those the path resolves to (realpath): a
 * symbolic link among the directories is followed, and where it leads
 * must keep the rules.  Then every use goes through the checked
 * directory's descriptor (openat), so a path changed after the check
 * changes nothing.
 *
 * Does not use nbdkit: errors are returned as malloc'd sentences.
 */

#ifndef ABD_PRIVFILE_H
#define ABD_PRIVFILE_H

/* Returned by privfile_open when the file does not exist. */
#define PRIVFILE_MISSING (-2)

/* Open the directory holding PATH (absolute) after checking it and every
 * directory above it.  Returns a descriptor (O_PATH) and sets *NAME to
 * PATH's last component (malloc'd); or -1 with *ERRMSG (malloc'd, NULL
 * when out of memory).
 */
extern int privfile_dir_open (const char *path, char **name, char **errmsg);

/* Open NAME in DIRFD (from privfile_dir_open for PATH) with FLAGS
 * (O_RDONLY or O_RDWR; O_NOFOLLOW and O_CLOEXEC are added) and check that
 * it is a private file.  Returns the descriptor; PRIVFILE_MISSING if
 * there is no such file; or -1 with *ERRMSG.
 */
extern int privfile_open (int dirfd, const char *name, const char *path,
                          int flags, char **errmsg);

#endif /* ABD_PRIVFILE_H */
