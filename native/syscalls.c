// The few Linux system calls a Node PID 1 needs and Node cannot make by itself
// (DESIGN.md §3): mount, umount2, reboot, sync, sethostname, waitpid on one pid,
// PR_SET_CHILD_SUBREAPER, and the three ioctls that configure a static IPv4 address; and for unpacking image
// layers into overlay snapshots: mknod (whiteouts, device nodes, FIFOs), lsetxattr/lgetxattr (opaque dirs,
// file capabilities) and syncfs (a finished snapshot is on disk before it is renamed into place); and for the CRI's
// terminals: recvFd (the pty master crun sends over --console-socket, SCM_RIGHTS, received on the thread pool) and
// setWindowSize (TIOCSWINSZ).
//
// Plain C against the stable N-API (no node-addon-api, no node-gyp): the napi_* symbols
// resolve from the node binary when the addon is loaded, so the same source builds
// against the host's headers for tests and against Node 24's headers for the image.
//
// Every failure throws an Error whose .code is the errno name ("EBUSY"), whose .syscall
// names the call, and whose message names the argument, e.g.
//   mount("cgroup2" on /sys/fs/cgroup, type cgroup2): EBUSY (Device or resource busy)
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <net/route.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/wait.h>
#include <unistd.h>

// Mount data is at most one page for the kernel; paths at most PATH_MAX.
#define STR_MAX 4096

// ---------------------------------------------------------------------------
// Errors

static const char *errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#endif
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case ENOTBLK: return "ENOTBLK";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ELOOP: return "ELOOP";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENETUNREACH: return "ENETUNREACH";
    case ENETDOWN: return "ENETDOWN";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENODATA: return "ENODATA";
    case ERANGE: return "ERANGE";
    case E2BIG: return "E2BIG";
    case EDQUOT: return "EDQUOT";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EMSGSIZE: return "EMSGSIZE";
    case ECONNRESET: return "ECONNRESET";
    case EBADMSG: return "EBADMSG";
    case ECANCELED: return "ECANCELED";
    case ENOTSOCK: return "ENOTSOCK";
    default: return "EUNKNOWN";
  }
}

// If a napi call itself fails there is nothing sensible left to do but return NULL
// (undefined to JS); a pending exception, if any, propagates.
#define NAPI_OK(call)                  \
  do {                                 \
    if ((call) != napi_ok) return NULL; \
  } while (0)

static void set_string_prop(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  if (napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v) == napi_ok) {
    napi_set_named_property(env, obj, key, v);
  }
}

// Throw Error("<syscall>(<detail>): <ENAME> (<strerror>)") with .code, .errno, .syscall.
static napi_value throw_errno(napi_env env, const char *syscall, const char *detail, int err) {
  char message[STR_MAX * 2 + 256];
  const char *name = errno_name(err);
  snprintf(message, sizeof message, "%s(%s): %s (%s)", syscall, detail, name, strerror(err));
  napi_value code, msg, error, errnum;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok) return NULL;
  if (napi_create_error(env, code, msg, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, -err, &errnum) == napi_ok) napi_set_named_property(env, error, "errno", errnum);
  set_string_prop(env, error, "syscall", syscall);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_arg(napi_env env, const char *fn, const char *what) {
  char message[512];
  snprintf(message, sizeof message, "%s: %s", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

// ---------------------------------------------------------------------------
// Argument helpers. Each returns false after throwing.

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < want) {
    char what[128];
    snprintf(what, sizeof what, "expected %zu arguments, got %zu", want, argc);
    throw_arg(env, fn, what);
    return false;
  }
  return true;
}

// Reads a string (or null/undefined when nullable) into buf. *is_null tells which.
static bool get_string(napi_env env, napi_value value, char *buf, size_t size, bool nullable, bool *is_null,
                       const char *fn, const char *name) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (nullable && (type == napi_null || type == napi_undefined)) {
    *is_null = true;
    buf[0] = '\0';
    return true;
  }
  if (is_null) *is_null = false;
  if (type != napi_string) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a string%s", name, nullable ? " or null" : "");
    throw_arg(env, fn, what);
    return false;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) return false;
  if (len + 1 > size) {
    char what[128];
    snprintf(what, sizeof what, "%s is too long (%zu bytes, at most %zu)", name, len, size - 1);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", what);
    return false;
  }
  if (napi_get_value_string_utf8(env, value, buf, size, &len) != napi_ok) return false;
  if (strlen(buf) != len) {
    char what[128];
    snprintf(what, sizeof what, "%s must not contain NUL bytes", name);
    throw_arg(env, fn, what);
    return false;
  }
  return true;
}

static bool get_int64(napi_env env, napi_value value, int64_t *out, const char *fn, const char *name) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_number) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a number", name);
    throw_arg(env, fn, what);
    return false;
  }
  return napi_get_value_int64(env, value, out) == napi_ok;
}

static bool get_bool(napi_env env, napi_value value, bool *out, const char *fn, const char *name) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_boolean) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a boolean", name);
    throw_arg(env, fn, what);
    return false;
  }
  return napi_get_value_bool(env, value, out) == napi_ok;
}

static napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

// ---------------------------------------------------------------------------
// Filesystems

// mount(source, target, fstype, flags, data)
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "mount")) return NULL;
  char source[STR_MAX], target[STR_MAX], fstype[256], data[STR_MAX];
  bool source_null, fstype_null, data_null, target_null;
  int64_t flags;
  if (!get_string(env, argv[0], source, sizeof source, true, &source_null, "mount", "source")) return NULL;
  if (!get_string(env, argv[1], target, sizeof target, false, &target_null, "mount", "target")) return NULL;
  if (!get_string(env, argv[2], fstype, sizeof fstype, true, &fstype_null, "mount", "fstype")) return NULL;
  if (!get_int64(env, argv[3], &flags, "mount", "flags")) return NULL;
  if (!get_string(env, argv[4], data, sizeof data, true, &data_null, "mount", "data")) return NULL;
  if (flags < 0 || flags > 0xffffffffLL) return throw_arg(env, "mount", "flags must be 0..0xffffffff");

  if (mount(source_null ? NULL : source, target, fstype_null ? NULL : fstype, (unsigned long)flags,
            data_null ? NULL : data) != 0) {
    int err = errno;
    char detail[STR_MAX * 2 + 300];
    snprintf(detail, sizeof detail, "\"%s\" on %s, type %s", source_null ? "none" : source, target,
             fstype_null ? "none" : fstype);
    return throw_errno(env, "mount", detail, err);
  }
  return undefined(env);
}

// umount2(target, flags)
static napi_value js_umount2(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "umount2")) return NULL;
  char target[STR_MAX];
  int64_t flags;
  if (!get_string(env, argv[0], target, sizeof target, false, NULL, "umount2", "target")) return NULL;
  if (!get_int64(env, argv[1], &flags, "umount2", "flags")) return NULL;
  if (flags < 0 || flags > INT_MAX) return throw_arg(env, "umount2", "flags out of range");
  if (umount2(target, (int)flags) != 0) return throw_errno(env, "umount2", target, errno);
  return undefined(env);
}

static napi_value js_sync(napi_env env, napi_callback_info info) {
  (void)info;
  sync();  // sync(2) cannot fail.
  return undefined(env);
}

// mknod(path, mode, major, minor): mode carries the file type (S_IFCHR, S_IFBLK, S_IFIFO) and the permission
// bits (the umask still applies; callers chmod afterwards). A whiteout is a character device 0/0.
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv, "mknod")) return NULL;
  char path[STR_MAX];
  int64_t mode, major_, minor_;
  if (!get_string(env, argv[0], path, sizeof path, false, NULL, "mknod", "path")) return NULL;
  if (!get_int64(env, argv[1], &mode, "mknod", "mode")) return NULL;
  if (!get_int64(env, argv[2], &major_, "mknod", "major")) return NULL;
  if (!get_int64(env, argv[3], &minor_, "mknod", "minor")) return NULL;
  int type = (int)(mode & S_IFMT);
  if (mode < 0 || mode > 0177777 || (type != S_IFCHR && type != S_IFBLK && type != S_IFIFO)) {
    return throw_arg(env, "mknod", "mode must hold S_IFCHR, S_IFBLK or S_IFIFO plus permission bits");
  }
  if (major_ < 0 || major_ > 0xfff || minor_ < 0 || minor_ > 0xfffff) {
    return throw_arg(env, "mknod", "major must be 0..4095 and minor 0..1048575");
  }
  if (mknod(path, (mode_t)mode, makedev((unsigned)major_, (unsigned)minor_)) != 0) {
    int err = errno;
    char detail[STR_MAX + 64];
    snprintf(detail, sizeof detail, "%s, %s %lld:%lld", path,
             type == S_IFCHR ? "char" : type == S_IFBLK ? "block" : "fifo", (long long)major_, (long long)minor_);
    return throw_errno(env, "mknod", detail, err);
  }
  return undefined(env);
}

// lsetxattr(path, name, value: Buffer): on the link itself, never following a symlink.
static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "lsetxattr")) return NULL;
  char path[STR_MAX], name[256];
  if (!get_string(env, argv[0], path, sizeof path, false, NULL, "lsetxattr", "path")) return NULL;
  if (!get_string(env, argv[1], name, sizeof name, false, NULL, "lsetxattr", "name")) return NULL;
  bool is_buffer = false;
  if (napi_is_buffer(env, argv[2], &is_buffer) != napi_ok) return NULL;
  if (!is_buffer) return throw_arg(env, "lsetxattr", "value must be a Buffer");
  void *data = NULL;
  size_t length = 0;
  if (napi_get_buffer_info(env, argv[2], &data, &length) != napi_ok) return NULL;
  if (lsetxattr(path, name, length ? data : "", length, 0) != 0) {
    int err = errno;
    char detail[STR_MAX + 300];
    snprintf(detail, sizeof detail, "%s, %s, %zu bytes", path, name, length);
    return throw_errno(env, "lsetxattr", detail, err);
  }
  return undefined(env);
}

// lgetxattr(path, name) -> Buffer, or null when the attribute is not set (ENODATA).
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "lgetxattr")) return NULL;
  char path[STR_MAX], name[256];
  if (!get_string(env, argv[0], path, sizeof path, false, NULL, "lgetxattr", "path")) return NULL;
  if (!get_string(env, argv[1], name, sizeof name, false, NULL, "lgetxattr", "name")) return NULL;
  char value[65536];  // XATTR_SIZE_MAX
  ssize_t n = lgetxattr(path, name, value, sizeof value);
  napi_value result;
  if (n < 0) {
    int err = errno;
    if (err == ENODATA) {
      NAPI_OK(napi_get_null(env, &result));
      return result;
    }
    char detail[STR_MAX + 300];
    snprintf(detail, sizeof detail, "%s, %s", path, name);
    return throw_errno(env, "lgetxattr", detail, err);
  }
  NAPI_OK(napi_create_buffer_copy(env, (size_t)n, value, NULL, &result));
  return result;
}

// syncfs(path): flush the whole filesystem holding path (one call instead of an fsync per unpacked file).
static napi_value js_syncfs(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "syncfs")) return NULL;
  char path[STR_MAX];
  if (!get_string(env, argv[0], path, sizeof path, false, NULL, "syncfs", "path")) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return throw_errno(env, "open", path, errno);
  if (syncfs(fd) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "syncfs", path, err);
  }
  if (close(fd) != 0) return throw_errno(env, "close", path, errno);
  return undefined(env);
}

// ---------------------------------------------------------------------------
// Power and identity

// reboot("poweroff" | "restart" | "halt"). On success the kernel does not return here.
static napi_value js_reboot(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "reboot")) return NULL;
  char cmd[32];
  if (!get_string(env, argv[0], cmd, sizeof cmd, false, NULL, "reboot", "cmd")) return NULL;
  int how;
  if (strcmp(cmd, "poweroff") == 0) {
    how = RB_POWER_OFF;
  } else if (strcmp(cmd, "restart") == 0) {
    how = RB_AUTOBOOT;
  } else if (strcmp(cmd, "halt") == 0) {
    how = RB_HALT_SYSTEM;
  } else {
    return throw_arg(env, "reboot", "cmd must be 'poweroff', 'restart' or 'halt'");
  }
  if (reboot(how) != 0) return throw_errno(env, "reboot", cmd, errno);
  return undefined(env);
}

// setCtrlAltDel(enabled): true = the kernel reboots at once on ctrl-alt-del;
// false = the kernel sends SIGINT to PID 1, which then shuts down gracefully.
static napi_value js_set_ctrl_alt_del(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "setCtrlAltDel")) return NULL;
  bool enabled;
  if (!get_bool(env, argv[0], &enabled, "setCtrlAltDel", "enabled")) return NULL;
  if (reboot(enabled ? RB_ENABLE_CAD : RB_DISABLE_CAD) != 0) {
    return throw_errno(env, "reboot", enabled ? "CAD_ON" : "CAD_OFF", errno);
  }
  return undefined(env);
}

static napi_value js_sethostname(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "sethostname")) return NULL;
  char name[256];
  if (!get_string(env, argv[0], name, sizeof name, false, NULL, "sethostname", "name")) return NULL;
  if (sethostname(name, strlen(name)) != 0) {
    char detail[300];
    snprintf(detail, sizeof detail, "\"%s\"", name);
    return throw_errno(env, "sethostname", detail, errno);
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------
// Processes

// waitpid(pid, nohang) -> { pid, status, exited, code, signaled, signal } | null (nohang, still running).
// Callers pass one specific pid: a blind waitpid(-1) would steal exits libuv waits for (DESIGN.md §3).
static napi_value js_waitpid(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "waitpid")) return NULL;
  int64_t pid64;
  bool nohang;
  if (!get_int64(env, argv[0], &pid64, "waitpid", "pid")) return NULL;
  if (!get_bool(env, argv[1], &nohang, "waitpid", "nohang")) return NULL;
  if (pid64 < INT_MIN || pid64 > INT_MAX) return throw_arg(env, "waitpid", "pid out of range");

  int status = 0;
  pid_t got;
  do {
    got = waitpid((pid_t)pid64, &status, nohang ? WNOHANG : 0);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    char detail[32];
    snprintf(detail, sizeof detail, "%d", (int)pid64);
    return throw_errno(env, "waitpid", detail, errno);
  }
  napi_value result;
  if (got == 0) {
    NAPI_OK(napi_get_null(env, &result));
    return result;
  }
  napi_value v_pid, v_status, v_exited, v_code, v_signaled, v_signal;
  NAPI_OK(napi_create_object(env, &result));
  NAPI_OK(napi_create_int32(env, got, &v_pid));
  NAPI_OK(napi_create_int32(env, status, &v_status));
  NAPI_OK(napi_get_boolean(env, WIFEXITED(status), &v_exited));
  NAPI_OK(napi_get_boolean(env, WIFSIGNALED(status), &v_signaled));
  if (WIFEXITED(status)) {
    NAPI_OK(napi_create_int32(env, WEXITSTATUS(status), &v_code));
  } else {
    NAPI_OK(napi_get_null(env, &v_code));
  }
  if (WIFSIGNALED(status)) {
    NAPI_OK(napi_create_int32(env, WTERMSIG(status), &v_signal));
  } else {
    NAPI_OK(napi_get_null(env, &v_signal));
  }
  NAPI_OK(napi_set_named_property(env, result, "pid", v_pid));
  NAPI_OK(napi_set_named_property(env, result, "status", v_status));
  NAPI_OK(napi_set_named_property(env, result, "exited", v_exited));
  NAPI_OK(napi_set_named_property(env, result, "code", v_code));
  NAPI_OK(napi_set_named_property(env, result, "signaled", v_signaled));
  NAPI_OK(napi_set_named_property(env, result, "signal", v_signal));
  return result;
}

// Orphans of our descendants are re-parented to us instead of the real PID 1 (dev daemon mode).
static napi_value js_prctl_set_child_subreaper(napi_env env, napi_callback_info info) {
  (void)info;
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    int err = errno;
    if (err == EINVAL) {
      napi_value code, msg, error;
      NAPI_OK(napi_create_string_utf8(env, "EINVAL", NAPI_AUTO_LENGTH, &code));
      NAPI_OK(napi_create_string_utf8(
          env, "prctl(PR_SET_CHILD_SUBREAPER): EINVAL (Invalid argument): is this Linux >= 3.4?", NAPI_AUTO_LENGTH,
          &msg));
      NAPI_OK(napi_create_error(env, code, msg, &error));
      set_string_prop(env, error, "syscall", "prctl");
      napi_throw(env, error);
      return NULL;
    }
    return throw_errno(env, "prctl", "PR_SET_CHILD_SUBREAPER", err);
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------
// Network: classic ioctls on an AF_INET datagram socket. Enough for lo plus one static
// interface; anything richer belongs to rtnetlink.

// Runs one ioctl on a fresh socket; returns 0 or an errno.
static int inet_ioctl(unsigned long request, void *arg) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int rc = ioctl(fd, request, arg);
  int err = rc == 0 ? 0 : errno;
  close(fd);
  return err;
}

static bool get_ifname(napi_env env, napi_value value, struct ifreq *ifr, const char *fn) {
  char name[64];
  if (!get_string(env, value, name, sizeof name, false, NULL, fn, "name")) return false;
  if (name[0] == '\0' || strlen(name) >= IFNAMSIZ) {
    char what[128];
    snprintf(what, sizeof what, "interface name \"%s\" must be 1..%d bytes", name, IFNAMSIZ - 1);
    throw_arg(env, fn, what);
    return false;
  }
  memset(ifr, 0, sizeof *ifr);
  memcpy(ifr->ifr_name, name, strlen(name));
  return true;
}

static bool get_ipv4(napi_env env, napi_value value, struct in_addr *out, char *text, size_t size, const char *fn,
                     const char *name) {
  if (!get_string(env, value, text, size, false, NULL, fn, name)) return false;
  if (inet_pton(AF_INET, text, out) != 1) {
    char what[128];
    snprintf(what, sizeof what, "%s \"%s\" is not an IPv4 address", name, text);
    throw_arg(env, fn, what);
    return false;
  }
  return true;
}

static void set_sockaddr_in(struct sockaddr *sa, struct in_addr addr) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr = addr;
  memcpy(sa, &sin, sizeof sin);
}

static napi_value js_set_interface_up(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "setInterfaceUp")) return NULL;
  struct ifreq ifr;
  if (!get_ifname(env, argv[0], &ifr, "setInterfaceUp")) return NULL;
  int err = inet_ioctl(SIOCGIFFLAGS, &ifr);
  if (err) return throw_errno(env, "ioctl(SIOCGIFFLAGS)", ifr.ifr_name, err);
  ifr.ifr_flags |= IFF_UP;
  err = inet_ioctl(SIOCSIFFLAGS, &ifr);
  if (err) return throw_errno(env, "ioctl(SIOCSIFFLAGS)", ifr.ifr_name, err);
  return undefined(env);
}

// setInterfaceAddress(name, ipv4, prefixLen): SIOCSIFADDR then SIOCSIFNETMASK.
static napi_value js_set_interface_address(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "setInterfaceAddress")) return NULL;
  struct ifreq ifr;
  struct in_addr addr;
  char text[64];
  int64_t prefix;
  if (!get_ifname(env, argv[0], &ifr, "setInterfaceAddress")) return NULL;
  if (!get_ipv4(env, argv[1], &addr, text, sizeof text, "setInterfaceAddress", "ipv4")) return NULL;
  if (!get_int64(env, argv[2], &prefix, "setInterfaceAddress", "prefixLen")) return NULL;
  if (prefix < 0 || prefix > 32) return throw_arg(env, "setInterfaceAddress", "prefixLen must be 0..32");

  char detail[128];
  snprintf(detail, sizeof detail, "%s %s/%d", ifr.ifr_name, text, (int)prefix);
  set_sockaddr_in(&ifr.ifr_addr, addr);
  int err = inet_ioctl(SIOCSIFADDR, &ifr);
  if (err) return throw_errno(env, "ioctl(SIOCSIFADDR)", detail, err);

  struct in_addr mask;
  mask.s_addr = htonl(prefix == 0 ? 0 : (uint32_t)0xffffffffu << (32 - prefix));
  set_sockaddr_in(&ifr.ifr_netmask, mask);
  err = inet_ioctl(SIOCSIFNETMASK, &ifr);
  if (err) return throw_errno(env, "ioctl(SIOCSIFNETMASK)", detail, err);
  return undefined(env);
}

// addDefaultRoute(gatewayIpv4): 0.0.0.0/0 via the gateway; the kernel picks the interface
// whose subnet holds the gateway (ENETUNREACH when none does).
static napi_value js_add_default_route(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "addDefaultRoute")) return NULL;
  struct in_addr gw, any;
  char text[64];
  if (!get_ipv4(env, argv[0], &gw, text, sizeof text, "addDefaultRoute", "gateway")) return NULL;
  any.s_addr = htonl(INADDR_ANY);

  struct rtentry rt;
  memset(&rt, 0, sizeof rt);
  set_sockaddr_in(&rt.rt_dst, any);
  set_sockaddr_in(&rt.rt_genmask, any);
  set_sockaddr_in(&rt.rt_gateway, gw);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  int err = inet_ioctl(SIOCADDRT, &rt);
  if (err) {
    char detail[96];
    snprintf(detail, sizeof detail, "default via %s", text);
    return throw_errno(env, "ioctl(SIOCADDRT)", detail, err);
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------
// Terminals (the CRI's tty exec and attach: crun --console-socket)

// What one recvFd does on the libuv thread pool: wait (bounded) for one message on a connected Unix socket and
// take the descriptor it carries (SCM_RIGHTS), close-on-exec. crun sends the pty master this way.
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int socket_fd;
  int timeout_ms;
  int received_fd;
  int err;
  const char *failed;  // which call failed (for the message)
} recv_fd_job;

static void recv_fd_execute(napi_env env, void *data) {
  (void)env;
  recv_fd_job *job = data;
  job->received_fd = -1;
  struct pollfd pfd = {.fd = job->socket_fd, .events = POLLIN};
  int ready;
  do {
    ready = poll(&pfd, 1, job->timeout_ms);
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) {
    job->err = errno;
    job->failed = "poll";
    return;
  }
  if (ready == 0) {
    job->err = ETIMEDOUT;
    job->failed = "poll";
    return;
  }
  char byte[64];
  struct iovec iov = {.iov_base = byte, .iov_len = sizeof byte};
  union {
    char buf[CMSG_SPACE(sizeof(int) * 4)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n;
  do {
    n = recvmsg(job->socket_fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    job->err = errno;
    job->failed = "recvmsg";
    return;
  }
  int fd = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int fds[4];
    memcpy(fds, CMSG_DATA(c), count * sizeof(int) > sizeof fds ? sizeof fds : count * sizeof(int));
    // Keep the first descriptor; a peer that sent more does not leak them into auraed.
    for (size_t i = 0; i < count && i < 4; i++) {
      if (fd < 0) fd = fds[i];
      else close(fds[i]);
    }
  }
  if (fd < 0) {
    job->err = (msg.msg_flags & MSG_CTRUNC) ? EMSGSIZE : (n == 0 ? ECONNRESET : EBADMSG);
    job->failed = "recvmsg";
    return;
  }
  job->received_fd = fd;
  job->err = 0;
}

static void recv_fd_complete(napi_env env, napi_status status, void *data) {
  recv_fd_job *job = data;
  napi_value result;
  if (status == napi_ok && job->err == 0) {
    if (napi_create_int32(env, job->received_fd, &result) == napi_ok) {
      napi_resolve_deferred(env, job->deferred, result);
    } else {
      close(job->received_fd);
    }
  } else {
    int err = job->err != 0 ? job->err : ECANCELED;
    char message[512];
    const char *why = err == ETIMEDOUT ? "no descriptor arrived in time: did the peer (crun --console-socket) start?"
                      : err == EBADMSG  ? "the message carried no descriptor: is the peer crun --console-socket?"
                      : err == ECONNRESET ? "the peer closed the connection without sending a descriptor"
                                          : strerror(err);
    snprintf(message, sizeof message, "%s(socket fd %d, %d ms): %s (%s)", job->failed ? job->failed : "recvFd", job->socket_fd,
             job->timeout_ms, errno_name(err), why);
    napi_value code, msg, error, errnum;
    if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) == napi_ok &&
        napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) == napi_ok &&
        napi_create_error(env, code, msg, &error) == napi_ok) {
      if (napi_create_int32(env, -err, &errnum) == napi_ok) napi_set_named_property(env, error, "errno", errnum);
      set_string_prop(env, error, "syscall", job->failed ? job->failed : "recvFd");
      napi_reject_deferred(env, job->deferred, error);
    }
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

// recvFd(socketFd, timeoutMs) -> Promise<fd>: the descriptor the next message on the connected Unix socket
// carries (close-on-exec). Waits on the thread pool, at most timeoutMs (1..600000). The socket stays open.
static napi_value js_recv_fd(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "recvFd")) return NULL;
  int64_t fd, timeout;
  if (!get_int64(env, argv[0], &fd, "recvFd", "socketFd")) return NULL;
  if (!get_int64(env, argv[1], &timeout, "recvFd", "timeoutMs")) return NULL;
  if (fd < 0 || fd > INT_MAX) return throw_arg(env, "recvFd", "socketFd must be a descriptor (0..2147483647)");
  if (timeout < 1 || timeout > 600000) return throw_arg(env, "recvFd", "timeoutMs must be 1..600000");
  recv_fd_job *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_errno(env, "recvFd", "allocating the job", ENOMEM);
  job->socket_fd = (int)fd;
  job->timeout_ms = (int)timeout;
  job->received_fd = -1;
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "aurae.recvFd", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, recv_fd_execute, recv_fd_complete, job, &job->work) != napi_ok) {
    free(job);
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    free(job);
    return NULL;
  }
  return promise;
}

// setWindowSize(fd, rows, cols): TIOCSWINSZ on a terminal (a pty master: the process on the slave gets SIGWINCH).
static napi_value js_set_window_size(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "setWindowSize")) return NULL;
  int64_t fd, rows, cols;
  if (!get_int64(env, argv[0], &fd, "setWindowSize", "fd")) return NULL;
  if (!get_int64(env, argv[1], &rows, "setWindowSize", "rows")) return NULL;
  if (!get_int64(env, argv[2], &cols, "setWindowSize", "cols")) return NULL;
  if (fd < 0 || fd > INT_MAX) return throw_arg(env, "setWindowSize", "fd must be a descriptor (0..2147483647)");
  if (rows < 0 || rows > 65535 || cols < 0 || cols > 65535) return throw_arg(env, "setWindowSize", "rows and cols must be 0..65535");
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  if (ioctl((int)fd, TIOCSWINSZ, &ws) != 0) {
    char detail[96];
    snprintf(detail, sizeof detail, "fd %d, TIOCSWINSZ %dx%d", (int)fd, (int)rows, (int)cols);
    return throw_errno(env, "ioctl", detail, errno);
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------
// Module

static napi_value init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"mount", js_mount},
      {"umount2", js_umount2},
      {"sync", js_sync},
      {"mknod", js_mknod},
      {"lsetxattr", js_lsetxattr},
      {"lgetxattr", js_lgetxattr},
      {"syncfs", js_syncfs},
      {"reboot", js_reboot},
      {"setCtrlAltDel", js_set_ctrl_alt_del},
      {"sethostname", js_sethostname},
      {"waitpid", js_waitpid},
      {"prctlSetChildSubreaper", js_prctl_set_child_subreaper},
      {"setInterfaceUp", js_set_interface_up},
      {"setInterfaceAddress", js_set_interface_address},
      {"addDefaultRoute", js_add_default_route},
      {"recvFd", js_recv_fd},
      {"setWindowSize", js_set_window_size},
  };
  static const struct {
    const char *name;
    int64_t value;
  } constants[] = {
      {"MS_RDONLY", MS_RDONLY},       {"MS_NOSUID", MS_NOSUID},
      {"MS_NODEV", MS_NODEV},         {"MS_NOEXEC", MS_NOEXEC},
      {"MS_SYNCHRONOUS", MS_SYNCHRONOUS}, {"MS_REMOUNT", MS_REMOUNT},
      {"MS_MANDLOCK", MS_MANDLOCK},   {"MS_DIRSYNC", MS_DIRSYNC},
      {"MS_NOATIME", MS_NOATIME},     {"MS_NODIRATIME", MS_NODIRATIME},
      {"MS_BIND", MS_BIND},           {"MS_MOVE", MS_MOVE},
      {"MS_REC", MS_REC},             {"MS_SILENT", MS_SILENT},
      {"MS_UNBINDABLE", MS_UNBINDABLE}, {"MS_PRIVATE", MS_PRIVATE},
      {"MS_SLAVE", MS_SLAVE},         {"MS_SHARED", MS_SHARED},
      {"MS_RELATIME", MS_RELATIME},   {"MS_STRICTATIME", MS_STRICTATIME},
      {"MS_LAZYTIME", MS_LAZYTIME},   {"MNT_FORCE", MNT_FORCE},
      {"MNT_DETACH", MNT_DETACH},     {"MNT_EXPIRE", MNT_EXPIRE},
      {"UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    NAPI_OK(napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn));
    NAPI_OK(napi_set_named_property(env, exports, functions[i].name, fn));
  }
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
    napi_value v;
    NAPI_OK(napi_create_int64(env, constants[i].value, &v));
    NAPI_OK(napi_set_named_property(env, exports, constants[i].name, v));
  }
  return exports;
}

NAPI_MODULE(syscalls, init)
