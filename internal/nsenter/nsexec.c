// The namespace-joining half of the nsenter helper. It runs as an ELF
// constructor, before the Go runtime starts any thread: setns(CLONE_NEWUSER)
// fails with EINVAL in a multi-threaded process, and a rootless caller must
// join the target's user namespace before its network namespace. runc's
// nsexec works the same way. It does nothing unless nsgate re-executed
// itself as a helper (environment variable _NSGATE_ROLE=nsenter).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

// fail reports "E<message>" on the helper socket, the same framing the Go
// side uses, and exits: the parent prints it as one line.
static void fail(int sock, const char *what, const char *path, int err)
{
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "E%s %s: %s", what, path, strerror(err));
	if (n < 0)
		_exit(1);
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	(void)send(sock, buf, (size_t)n, MSG_NOSIGNAL);
	_exit(1);
}

__attribute__((constructor)) static void nsgate_nsenter(void)
{
	const char *role = getenv("_NSGATE_ROLE");
	if (role == NULL || strcmp(role, "nsenter") != 0)
		return;
	const char *sockenv = getenv("_NSGATE_SOCK");
	const char *userns = getenv("_NSGATE_USERNS");
	const char *netns = getenv("_NSGATE_NETNS");
	int sock = sockenv ? atoi(sockenv) : -1;
	if (sock < 3 || netns == NULL || *netns == '\0') {
		fprintf(stderr, "nsgate: nsenter helper started without its socket or namespace\n");
		_exit(1);
	}

	// Open both before joining anything: after joining the user namespace the
	// helper may no longer be allowed to open the target's /proc files.
	int userfd = -1;
	if (userns != NULL && *userns != '\0') {
		userfd = open(userns, O_RDONLY | O_CLOEXEC);
		if (userfd < 0)
			fail(sock, "open user namespace", userns, errno);
	}
	int netfd = open(netns, O_RDONLY | O_CLOEXEC);
	if (netfd < 0)
		fail(sock, "open network namespace", netns, errno);

	if (userfd >= 0) {
		struct stat target, self;
		// Joining the user namespace one is already in is EINVAL; podman
		// runs its network helper from inside the container's user namespace.
		int same = fstat(userfd, &target) == 0 && stat("/proc/self/ns/user", &self) == 0 &&
			   target.st_dev == self.st_dev && target.st_ino == self.st_ino;
		if (!same && setns(userfd, CLONE_NEWUSER) < 0)
			fail(sock, "join user namespace", userns, errno);
		close(userfd);
	}
	if (setns(netfd, CLONE_NEWNET) < 0)
		fail(sock, "join network namespace", netns, errno);
	close(netfd);
}
