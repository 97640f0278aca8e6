/* A static test program run as the agent inside a mount plan's root (chroot): each
 * argument pair is an operation and a path; it prints one line per operation, "ok" or
 * the errno name, so the test sees what the agent could and could not do. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *result(int ok)
{
    if (ok)
        return "ok";
    switch (errno) {
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case ENOENT: return "ENOENT";
    case EPERM: return "EPERM";
    case ENOTDIR: return "ENOTDIR";
    default: return strerror(errno);
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *op = argv[i], *path = argv[i + 1];
        int ok = 0;
        if (!strcmp(op, "read")) {
            int fd = open(path, O_RDONLY);
            char buf[64];
            ok = fd >= 0 && read(fd, buf, sizeof buf) >= 0;
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(op, "write")) {
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ok = fd >= 0 && write(fd, "written\n", 8) == 8;
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(op, "burst")) {
            /* path: a directory; writes 1000 files into it */
            char name[4096];
            ok = 1;
            for (int n = 0; n < 1000 && ok; n++) {
                snprintf(name, sizeof name, "%s/burst-%04d.txt", path, n);
                int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                ok = fd >= 0 && write(fd, "x", 1) == 1;
                if (fd >= 0)
                    close(fd);
            }
        }
        printf("%s %s %s\n", op, path, result(ok));
    }
    return 0;
}
