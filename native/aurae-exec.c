// aurae-exec: start one executable of a cell. auraed spawns it with the executable's environment and its
// stdout/stderr pipes; it prepares the process in a fixed order and then execs the program:
//
//   1. put the program into the executable's leaf cgroup BEFORE it runs, so every process it creates (and every
//      byte it allocates) is accounted to and limited by the cell. Where the kernel has it (5.7+; the image's 6.1
//      does), clone3 with CLONE_INTO_CGROUP creates the process that becomes the program (or the pid namespace's
//      init) directly inside <DIR>, already in its new namespaces; aurae-exec stays outside as its supervisor
//      and says on --status-fd which pid that is. Otherwise aurae-exec writes its own pid to <DIR>/cgroup.procs
//      and carries on itself. (That write migrates a running process, which waits for an RCU grace period on
//      every call: tens of milliseconds on an emulated CPU. A process created in the cgroup is never migrated.)
//   2. enter the requested namespaces (pid, mount, uts, ipc, net): with clone3 the child is created in them;
//      otherwise aurae-exec unshares them;
//   3. in a new UTS namespace set the hostname; in a new network namespace bring `lo` up; in a new mount
//      namespace make every mount private, so nothing we mount leaks back to the host;
//   4. with a new pid namespace: the namespace's PID 1 acts as its init (mounts a private /proc when the mount
//      namespace is new too, forks the program, reaps every process, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/
//      SIGUSR1/SIGUSR2 to the program, exits with its status). The outer process (aurae-exec) forwards the same
//      signals to that init and ends exactly as the program did (same code, same signal); after a clone3 it
//      does the same for a program without a pid namespace;
//   5. drop privileges (setgroups, setgid, setuid), chdir, execvp.
//
// Every system call is checked. On failure a line saying what failed and what to do goes to stderr (the
// executable's log) and to the --status-fd pipe, which is close-on-exec: auraed reads EOF without data once the
// program was executed, and a message otherwise; before either, a line "pid N" when the program (or its
// namespace's init) is a child of aurae-exec (the clone3 path): the process in the cell auraed should signal.
// Exit codes follow the shell and env(1): 125 when aurae-exec itself failed, 126 when the program was found but
// could not be executed, 127 when it was not found.
//
// Usage: aurae-exec --cgroup DIR|none [--pid] [--mount] [--uts HOSTNAME] [--ipc] [--net]
//                   [--uid N] [--gid N] [--cwd DIR] [--status-fd N] -- PROGRAM [ARG...]
// `--cgroup none` skips step 1 (host tests on cgroup v1 machines); a DIR that is not on cgroup2 (a test's plain
// directory) is joined by the cgroup.procs write.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_SETUP 125
#define EXIT_CANNOT_EXECUTE 126
#define EXIT_NOT_FOUND 127

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

// The kernel's struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7); our own copy, so the build does
// not depend on the build host's kernel headers (glibc has no clone3 wrapper).
struct clone_args_v2 {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

struct options {
  const char *cgroup;  // NULL: not given (an error); "none": skip
  bool pid, mount, ipc, net;
  const char *hostname;  // non-NULL: new UTS namespace
  bool has_uid, has_gid;
  uid_t uid;
  gid_t gid;
  const char *cwd;
  int status_fd;  // -1: none
  char **argv;    // program and arguments
};

static int status_fd = -1;

static const char *errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#endif
  return "errno";
}

// Report a failure on stderr and on the status pipe. Writes are best effort: there is nobody else to tell.
static void report(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, "aurae-exec: ", 12);
  ignored = write(STDERR_FILENO, line, (size_t)n);
  if (status_fd >= 0) ignored = write(status_fd, line, (size_t)n);
  (void)ignored;
}

// "<what> failed: <strerror> (<ENAME>): <hint>" and exit with `code`.
static void __attribute__((noreturn)) die_errno(int code, int err, const char *what, const char *hint) {
  report("%s failed: %s (%s): %s", what, strerror(err), errno_name(err), hint);
  _exit(code);
}

static void __attribute__((noreturn)) usage(const char *problem) {
  report("%s; usage: aurae-exec --cgroup DIR|none [--pid] [--mount] [--uts HOSTNAME] [--ipc] [--net] "
         "[--uid N] [--gid N] [--cwd DIR] [--status-fd N] -- PROGRAM [ARG...]", problem);
  _exit(EXIT_SETUP);
}

static unsigned long parse_id(const char *flag, const char *value, unsigned long max) {
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v > max) {
    char problem[256];
    snprintf(problem, sizeof problem, "%s: \"%s\" is not a number between 0 and %lu", flag, value, max);
    usage(problem);
  }
  return v;
}

static struct options parse_args(int argc, char **argv) {
  struct options o = {.status_fd = -1};
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    const char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "--pid") == 0) {
      o.pid = true;
    } else if (strcmp(a, "--mount") == 0) {
      o.mount = true;
    } else if (strcmp(a, "--ipc") == 0) {
      o.ipc = true;
    } else if (strcmp(a, "--net") == 0) {
      o.net = true;
    } else if (strcmp(a, "--cgroup") == 0 || strcmp(a, "--uts") == 0 || strcmp(a, "--uid") == 0 ||
               strcmp(a, "--gid") == 0 || strcmp(a, "--cwd") == 0 || strcmp(a, "--status-fd") == 0) {
      if (value == NULL) {
        char problem[128];
        snprintf(problem, sizeof problem, "%s needs a value", a);
        usage(problem);
      }
      i++;
      if (strcmp(a, "--cgroup") == 0) o.cgroup = value;
      else if (strcmp(a, "--uts") == 0) o.hostname = value;
      else if (strcmp(a, "--cwd") == 0) o.cwd = value;
      else if (strcmp(a, "--uid") == 0) o.has_uid = true, o.uid = (uid_t)parse_id(a, value, 4294967294UL);
      else if (strcmp(a, "--gid") == 0) o.has_gid = true, o.gid = (gid_t)parse_id(a, value, 4294967294UL);
      else o.status_fd = (int)parse_id(a, value, 1024);
    } else {
      char problem[256];
      snprintf(problem, sizeof problem, "unknown option \"%.128s\"", a);
      usage(problem);
    }
  }
  if (o.cgroup == NULL) usage("--cgroup is required (a cgroup directory, or none)");
  if (i >= argc) usage("no program given after --");
  if (o.hostname != NULL && (strlen(o.hostname) == 0 || strlen(o.hostname) > 64)) usage("--uts: the hostname must be 1..64 characters");
  o.argv = &argv[i];
  return o;
}

// Step 1 without clone3. A plain write of our own pid: after it returns, this process and all its future
// children are in DIR.
static void join_cgroup(const char *dir) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path) {
    report("cgroup path too long: %s", dir);
    _exit(EXIT_SETUP);
  }
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die_errno(EXIT_SETUP, errno, path, "open: does the executable's cgroup exist (auraed creates it) and is cgroup2 mounted?");
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (write(fd, pid, (size_t)n) != n) {
    int err = errno;
    close(fd);
    die_errno(EXIT_SETUP, err, path, "write: the cell's cgroup refused the process (a full pids.max, or controllers enabled in a leaf?)");
  }
  if (close(fd) != 0) die_errno(EXIT_SETUP, errno, path, "close");
}

static void set_loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die_errno(EXIT_SETUP, errno, "socket(AF_INET) for lo", "is IPv4 (CONFIG_INET) in the kernel?");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) die_errno(EXIT_SETUP, errno, "SIOCGIFFLAGS lo", "the new network namespace has no loopback device");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) die_errno(EXIT_SETUP, errno, "SIOCSIFFLAGS lo up", "aurae-exec needs CAP_NET_ADMIN (run by auraed as root)");
  close(s);
}

// The requested namespaces as CLONE_NEW* flags (for unshare or clone3).
static int namespace_flags(const struct options *o) {
  int flags = 0;
  if (o->pid) flags |= CLONE_NEWPID;
  if (o->mount) flags |= CLONE_NEWNS;
  if (o->hostname) flags |= CLONE_NEWUTS;
  if (o->ipc) flags |= CLONE_NEWIPC;
  if (o->net) flags |= CLONE_NEWNET;
  return flags;
}

// Step 3, in a process that is in its new namespaces.
static void configure_namespaces(const struct options *o) {
  if (o->mount && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    die_errno(EXIT_SETUP, errno, "making / a private mount (MS_REC|MS_PRIVATE)", "needs CAP_SYS_ADMIN in the new mount namespace");
  if (o->hostname && sethostname(o->hostname, strlen(o->hostname)) != 0)
    die_errno(EXIT_SETUP, errno, "sethostname", "needs CAP_SYS_ADMIN in the new UTS namespace");
  if (o->net) set_loopback_up();
}

// Steps 2 and 3 without clone3: namespaces the calling process itself enters at once (all but pid, which
// applies to its children).
static void enter_namespaces(const struct options *o) {
  int flags = namespace_flags(o);
  if (flags == 0) return;
  if (unshare(flags) != 0) die_errno(EXIT_SETUP, errno, "unshare", "are the namespaces built into the kernel (CONFIG_*_NS) and is aurae-exec run as root?");
  configure_namespaces(o);
}

// Step 5, in the process that becomes the program.
static void __attribute__((noreturn)) become_program(const struct options *o) {
  if (o->has_uid || o->has_gid) {
    gid_t gid = o->has_gid ? o->gid : (gid_t)o->uid;
    if (setgroups(0, NULL) != 0) die_errno(EXIT_SETUP, errno, "setgroups([])", "aurae-exec must start as root to change users");
    if (setgid(gid) != 0) die_errno(EXIT_SETUP, errno, "setgid", "aurae-exec must start as root to change groups");
    if (o->has_uid && setuid(o->uid) != 0) die_errno(EXIT_SETUP, errno, "setuid", "aurae-exec must start as root to change users");
  }
  const char *cwd = o->cwd ? o->cwd : "/";
  if (chdir(cwd) != 0) {
    char what[PATH_MAX + 16];
    snprintf(what, sizeof what, "chdir(%s)", cwd);
    die_errno(EXIT_SETUP, errno, what, "does the working directory exist, and may the executable's user enter it?");
  }
  execvp(o->argv[0], o->argv);
  int err = errno;
  char what[PATH_MAX + 16];
  snprintf(what, sizeof what, "executing %.4000s", o->argv[0]);
  if (err == ENOENT || err == ENOTDIR)
    die_errno(EXIT_NOT_FOUND, err, what, strchr(o->argv[0], '/') ? "check the path" : "not found in the PATH of the executable's environment: give an absolute path or set PATH");
  die_errno(EXIT_CANNOT_EXECUTE, err, what, "is it an executable file for this machine, and may the executable's user run it?");
}

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static sigset_t watched_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&set, forwarded[i]);
  sigaddset(&set, SIGCHLD);
  return set;
}

static bool is_forwarded(int sig) {
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
    if (forwarded[i] == sig) return true;
  return false;
}

static void unblock_all(void) {
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) die_errno(EXIT_SETUP, errno, "sigprocmask(unblock)", "a bug in aurae-exec");
}

// Wait for a watched signal; forward the forwardable ones to `target`; return when `target` was reaped, with
// its wait status. Reaps every other child too (as init it inherits the namespace's orphans).
static int supervise(pid_t target, const sigset_t *set) {
  for (;;) {
    siginfo_t info;
    struct timespec tick = {.tv_sec = 1, .tv_nsec = 0};
    int sig = sigtimedwait(set, &info, &tick);
    if (sig < 0 && errno != EAGAIN && errno != EINTR) die_errno(EXIT_SETUP, errno, "sigtimedwait", "a bug in aurae-exec");
    if (sig > 0 && is_forwarded(sig) && kill(target, sig) != 0 && errno != ESRCH)
      die_errno(EXIT_SETUP, errno, "forwarding a signal", "a bug in aurae-exec");
    // Reap on every wake-up (SIGCHLD can coalesce, and the 1 s tick covers a missed one).
    for (;;) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid == 0) break;
      if (pid < 0) {
        if (errno == EINTR) continue;
        if (errno == ECHILD) break;
        die_errno(EXIT_SETUP, errno, "waitpid", "a bug in aurae-exec");
      }
      if (pid == target) return status;
    }
  }
}

static int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return EXIT_SETUP;
}

// End this process exactly as `status` says: the same exit code, or death by the same signal, so auraed records
// what happened to the program and not to its helpers.
static void __attribute__((noreturn)) end_like(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct rlimit no_core = {0, 0};
    // The program may have dumped core; its helper must not add a second one.
    if (setrlimit(RLIMIT_CORE, &no_core) != 0) report("setrlimit(RLIMIT_CORE) failed: %s", strerror(errno));
    if (sig != SIGKILL && sig != SIGSTOP && signal(sig, SIG_DFL) == SIG_ERR) report("signal(%d, SIG_DFL) failed: %s", sig, strerror(errno));
    unblock_all();
    if (kill(getpid(), sig) != 0) report("re-raising signal %d failed: %s", sig, strerror(errno));
    // Only reached for a signal whose default action does not terminate.
  }
  _exit(exit_code_of(status));
}

// The outer process's end when the program ran under a namespace init: as the program, whose raw status the
// init wrote to `report_fd` before exiting; without that report the init itself died (e.g. SIGKILL from
// cgroup.kill), and we end as it did.
static void __attribute__((noreturn)) end_like_reported(int report_fd, int init_status) {
  int program_status = 0;
  ssize_t n = read(report_fd, &program_status, sizeof program_status);
  end_like(n == (ssize_t)sizeof program_status ? program_status : init_status);
}

// Step 4: we are the namespace's PID 1. Runs the program as our child and exits with its status; writes the raw
// status to `report_fd` first so the outer process can reproduce a death by signal (PID 1 cannot die by one).
static void __attribute__((noreturn)) run_as_namespace_init(const struct options *o, const sigset_t *set, int report_fd) {
  if (o->mount && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
    die_errno(EXIT_SETUP, errno, "mounting a private /proc", "is /proc a directory, and CONFIG_PROC_FS built in?");
  pid_t program = fork();
  if (program < 0) die_errno(EXIT_SETUP, errno, "fork (program in the pid namespace)", "is the cell's pids.max reached?");
  if (program == 0) {
    close(report_fd);
    unblock_all();
    become_program(o);
  }
  if (status_fd >= 0) {
    close(status_fd);
    status_fd = -1;
  }
  int status = supervise(program, set);
  ssize_t ignored = write(report_fd, &status, sizeof status);
  (void)ignored;
  _exit(exit_code_of(status));
}

// DIR opened for clone3, or -1 when it cannot be used for that: missing (join_cgroup then says why, on the same
// path as before) or not on cgroup2 (a host test's plain directory).
static int open_cgroup(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
    close(fd);
    return -1;
  }
  return fd;
}

// Steps 1 and 2 by clone3: a child created inside the cgroup (never migrated) and in the requested namespaces.
// Returns its pid in the parent and 0 in the child; -1 when this kernel cannot do it (ENOSYS: no clone3, before
// 5.3; E2BIG: no CLONE_INTO_CGROUP, before 5.7; EINVAL: flags it does not know; EPERM: a seccomp filter that
// refuses clone3, as older container runtimes' default profiles do), in which case nothing was
// created and the caller takes the cgroup.procs path, which reports any real problem.
static pid_t clone_into_cgroup(int cgroup_fd, int ns_flags) {
  struct clone_args_v2 args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_INTO_CGROUP | (uint64_t)(unsigned)ns_flags;
  args.exit_signal = SIGCHLD;
  args.cgroup = (uint64_t)cgroup_fd;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid >= 0) return (pid_t)pid;
  if (errno == ENOSYS || errno == E2BIG || errno == EINVAL || errno == EPERM) return -1;
  die_errno(EXIT_SETUP, errno, "clone3 into the executable's cgroup",
            "is the cell's pids.max reached (EAGAIN), does the leaf delegate controllers (EBUSY), or is aurae-exec not run as root (EACCES)?");
}

// Tell auraed which process is the executable's: the child in the cell (the program, or its namespace's init),
// not aurae-exec outside it. One line on the status descriptor, which this process then closes (the child
// keeps its copy until exec: EOF still means "executed").
static void report_child(pid_t child) {
  if (status_fd < 0) return;
  char line[32];
  int n = snprintf(line, sizeof line, "pid %d\n", (int)child);
  int fd = status_fd;
  status_fd = -1;  // a failure below is reported on stderr only
  if (write(fd, line, (size_t)n) != n) report("writing the child's pid to --status-fd failed: %s: auraed will signal aurae-exec, which forwards", strerror(errno));
  if (close(fd) != 0) report("closing --status-fd failed: %s", strerror(errno));
}

// Steps 1-5 on the clone3 path: the child becomes the program (or the pid namespace's init, which runs it);
// this process forwards signals to it and ends exactly as the program did. Returns only when the kernel has no
// CLONE_INTO_CGROUP, having changed nothing.
static void run_cloned(const struct options *o, int cgroup_fd) {
  // Blocked before the clone, so none is lost before supervise(); the child inherits the mask (an init keeps
  // it, the program's process unblocks before exec).
  sigset_t set = watched_signals();
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) die_errno(EXIT_SETUP, errno, "sigprocmask(block)", "a bug in aurae-exec");
  int report_pipe[2] = {-1, -1};
  if (o->pid && pipe2(report_pipe, O_CLOEXEC) != 0) die_errno(EXIT_SETUP, errno, "pipe2", "too many open files?");
  pid_t child = clone_into_cgroup(cgroup_fd, namespace_flags(o));
  if (child < 0) {
    if (o->pid) {
      close(report_pipe[0]);
      close(report_pipe[1]);
    }
    close(cgroup_fd);
    unblock_all();
    return;
  }
  if (child == 0) {
    close(cgroup_fd);
    configure_namespaces(o);
    if (o->pid) {
      close(report_pipe[0]);
      run_as_namespace_init(o, &set, report_pipe[1]);
    }
    unblock_all();
    become_program(o);
  }
  close(cgroup_fd);
  if (o->pid) close(report_pipe[1]);
  report_child(child);
  int child_status = supervise(child, &set);
  if (!o->pid) end_like(child_status);
  end_like_reported(report_pipe[0], child_status);
}

static void take_status_fd(const struct options *o) {
  if (o->status_fd < 0) return;
  int flags = fcntl(o->status_fd, F_GETFD);
  if (flags < 0 || fcntl(o->status_fd, F_SETFD, flags | FD_CLOEXEC) != 0)
    die_errno(EXIT_SETUP, errno, "--status-fd", "pass an open file descriptor");
  status_fd = o->status_fd;
}

int main(int argc, char **argv) {
  struct options o = parse_args(argc, argv);
  take_status_fd(&o);
  if (strcmp(o.cgroup, "none") != 0) {
    int cgroup_fd = open_cgroup(o.cgroup);
    if (cgroup_fd >= 0) run_cloned(&o, cgroup_fd);
    // No CLONE_INTO_CGROUP (or not a cgroup2 directory): this process joins, then carries on itself.
    join_cgroup(o.cgroup);
  }
  enter_namespaces(&o);
  if (!o.pid) become_program(&o);

  // Block the watched signals before forking, so none is lost between fork and sigtimedwait; the program's
  // process unblocks them before exec.
  sigset_t set = watched_signals();
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) die_errno(EXIT_SETUP, errno, "sigprocmask(block)", "a bug in aurae-exec");
  int report_pipe[2];
  if (pipe2(report_pipe, O_CLOEXEC) != 0) die_errno(EXIT_SETUP, errno, "pipe2", "too many open files?");
  pid_t init = fork();
  if (init < 0) die_errno(EXIT_SETUP, errno, "fork (init of the pid namespace)", "is the cell's pids.max reached?");
  if (init == 0) {
    close(report_pipe[0]);
    run_as_namespace_init(&o, &set, report_pipe[1]);
  }
  close(report_pipe[1]);
  if (status_fd >= 0) {
    close(status_fd);
    status_fd = -1;
  }
  end_like_reported(report_pipe[0], supervise(init, &set));
}
