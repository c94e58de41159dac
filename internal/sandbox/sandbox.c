// The sandbox (--enable-sandbox), built as an ELF constructor before the Go
// runtime starts: a mount namespace and the capability sets belong to each
// thread, so they must be in place before there is more than one, and
// unshare(CLONE_NEWUSER) refuses a multi-threaded process outright. nsgate
// re-executes itself into this role once everything that needs the real
// filesystem is open (tap, listeners, API socket); see sandbox.go.
//
// What it does, as slirp4netns does:
//   - a new mount namespace (in a new user namespace first, if nsgate has no
//     CAP_SYS_ADMIN where it runs: the rootlesskit case);
//   - a root that is an empty read-only tmpfs holding only /etc and /run,
//     bound read-only (nosuid, nodev, noexec), plus the real file behind
//     /etc/resolv.conf when it is a symlink to somewhere else;
//   - no_new_privs, and every capability dropped but CAP_NET_BIND_SERVICE.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ROOT "/tmp" // where the new root is built (hidden by its own tmpfs)

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "nsgate: --enable-sandbox: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
	_exit(1);
}

static void write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die("open", path);
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		die("write", path);
	close(fd);
}

// own_userns moves nsgate into a user namespace of its own, with its uid
// and gid mapped to themselves, so that it may build a mount namespace.
static void own_userns(void)
{
	char map[64];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(CLONE_NEWUSER) < 0)
		die("unshare(CLONE_NEWUSER)", NULL);
	snprintf(map, sizeof(map), "%u %u 1\n", uid, uid);
	write_file("/proc/self/uid_map", map);
	write_file("/proc/self/setgroups", "deny");
	snprintf(map, sizeof(map), "%u %u 1\n", gid, gid);
	write_file("/proc/self/gid_map", map);
}

// mkdirs creates every directory of path (absolute), like mkdir -p.
static void mkdirs(const char *path)
{
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof(buf))
		return;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				die("mkdir", buf);
			*p = '/';
		}
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		die("mkdir", buf);
}

// struct mount_attr and its flags (linux/mount.h clashes with sys/mount.h
// in glibc 2.36).
struct nsgate_mount_attr {
	__u64 attr_set, attr_clr, propagation, userns_fd;
};
#define NSGATE_MOUNT_ATTR_RDONLY 0x1
#define NSGATE_MOUNT_ATTR_NOSUID 0x2
#define NSGATE_MOUNT_ATTR_NODEV 0x4
#define NSGATE_MOUNT_ATTR_NOEXEC 0x8
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static int under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

// remount_ro remounts the mount at path read-only, nosuid, nodev and
// noexec, keeping its atime flags: inside a user namespace they are locked,
// and a remount that changed them would fail with EPERM.
static void remount_ro(const char *path)
{
	unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	struct statvfs st;
	if (statvfs(path, &st) == 0) {
		if (st.f_flag & ST_NOATIME)
			flags |= MS_NOATIME;
		if (st.f_flag & ST_NODIRATIME)
			flags |= MS_NODIRATIME;
		if (st.f_flag & ST_RELATIME)
			flags |= MS_RELATIME;
	}
	if (mount(NULL, path, NULL, flags, NULL) < 0)
		die("remount read-only", path);
}

// unescape decodes mountinfo's octal escapes (\040 for a space) in place.
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

// remount_ro_tree remounts read-only every mount at or below dir, one by
// one from /proc/self/mountinfo: what mount_setattr(AT_RECURSIVE) does in
// one call from Linux 5.12. A remount by path reaches the top mount at each
// path only. A mount that propagation stacked under another one (systemd
// makes / shared, and ip netns then leaves each /run/netns/NAME twice) keeps
// its flags, but no path leads to it, and the sandbox cannot unmount what
// covers it. The tree is bound whole (MS_REC), not mount by mount: in a user
// namespace, a bind without MS_REC of a mount with locked children fails.
static void remount_ro_tree(const char *dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (f == NULL)
		die("open", "/proc/self/mountinfo");
	char line[2 * PATH_MAX], mnt[PATH_MAX];
	while (fgets(line, sizeof(line), f) != NULL) {
		// ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ...
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		unescape(mnt);
		if (under(mnt, dir))
			remount_ro(mnt);
	}
	fclose(f);
}

// bind_ro makes from visible read-only at to, with every mount below it
// (/run holds others: /run/user/UID, /run/netns/...).
static void bind_ro(const char *from, const char *to)
{
	if (mount(from, to, NULL, MS_BIND | MS_REC, NULL) < 0)
		die("bind mount", from);
	if (mount(NULL, to, NULL, MS_SLAVE | MS_REC, NULL) < 0)
		die("make slave", to);
	struct nsgate_mount_attr attr = {
		.attr_set = NSGATE_MOUNT_ATTR_RDONLY | NSGATE_MOUNT_ATTR_NOSUID | NSGATE_MOUNT_ATTR_NODEV |
			    NSGATE_MOUNT_ATTR_NOEXEC,
	};
	if (syscall(SYS_mount_setattr, AT_FDCWD, to, AT_RECURSIVE, &attr, sizeof(attr)) == 0)
		return;
	if (errno != ENOSYS)
		die("make read-only", to);
	remount_ro_tree(to); // before Linux 5.12
}

static void new_root(void)
{
	char resolv[PATH_MAX];
	int resolv_fd = -1;
	if (realpath("/etc/resolv.conf", resolv) != NULL && !under(resolv, "/etc") && !under(resolv, "/run")) {
		// resolv.conf is a symlink out of /etc (say to /var/run/...): the
		// file it names is shown at the same path. Held open now, since
		// the tmpfs below may cover it (a file under /tmp).
		resolv_fd = open(resolv, O_PATH | O_CLOEXEC);
	}

	if (mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL) < 0)
		die("make / private", NULL);
	if (mount("tmpfs", ROOT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755") < 0)
		die("mount tmpfs on", ROOT);
	mkdirs(ROOT "/etc");
	mkdirs(ROOT "/run");
	mkdirs(ROOT "/old");
	bind_ro("/etc", ROOT "/etc");
	bind_ro("/run", ROOT "/run");
	if (resolv_fd >= 0) {
		char target[PATH_MAX + sizeof(ROOT)], source[64];
		snprintf(target, sizeof(target), ROOT "%s", resolv);
		char *slash = strrchr(target, '/');
		*slash = '\0';
		mkdirs(target);
		*slash = '/';
		int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			die("create", target);
		close(fd);
		snprintf(source, sizeof(source), "/proc/self/fd/%d", resolv_fd);
		bind_ro(source, target);
		close(resolv_fd);
	}
	if (chdir(ROOT) < 0)
		die("chdir", ROOT);
	if (syscall(SYS_pivot_root, ".", "old") < 0)
		die("pivot_root", ROOT);
	if (chdir("/") < 0)
		die("chdir", "/");
	if (umount2("/old", MNT_DETACH) < 0)
		die("unmount", "the old root");
	if (rmdir("/old") < 0)
		die("rmdir", "/old");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("remount / read-only", NULL);
}

static void drop_caps(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("prctl(PR_SET_NO_NEW_PRIVS)", NULL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		die("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", NULL);
	for (int cap = 0; cap <= 63; cap++) {
		if (cap == CAP_NET_BIND_SERVICE)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break; // past the last capability the kernel knows
			die("prctl(PR_CAPBSET_DROP)", NULL);
		}
	}
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		die("capget", NULL);
	// Keep CAP_NET_BIND_SERVICE if nsgate has it: the API may open
	// forwards on ports below 1024.
	__u32 keep = data[0].permitted & (1u << CAP_NET_BIND_SERVICE);
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = data[0].inheritable = keep;
	if (syscall(SYS_capset, &hdr, data) < 0)
		die("capset", NULL);
}

__attribute__((constructor)) static void nsgate_sandbox(void)
{
	const char *role = getenv("_NSGATE_ROLE");
	if (role == NULL || strcmp(role, "sandbox") != 0)
		return;
	if (unshare(CLONE_NEWNS) < 0) {
		if (errno != EPERM)
			die("unshare(CLONE_NEWNS)", NULL);
		own_userns();
		if (unshare(CLONE_NEWNS) < 0)
			die("unshare(CLONE_NEWNS)", NULL);
	}
	new_root();
	drop_caps();
}
