//! System call names for the violation report: the calls of this
//! architecture's table that a subverted thread would reach for or that
//! the filters allow. Any other is reported by number alone.

macro_rules! names {
    ($nr:expr; $($name:ident)*; x86_64: $($x86:ident)*) => {
        match $nr {
            $(libc::$name => Some(&stringify!($name)[4..]),)*
            $(#[cfg(target_arch = "x86_64")] libc::$x86 => Some(&stringify!($x86)[4..]),)*
            _ => None,
        }
    };
}

/// The name of system call `nr` of this architecture, if known here.
pub fn name(nr: libc::c_long) -> Option<&'static str> {
    names!(nr;
        SYS_read SYS_write SYS_close SYS_fstat SYS_lseek SYS_mmap SYS_mprotect SYS_munmap SYS_brk
        SYS_rt_sigaction SYS_rt_sigprocmask SYS_rt_sigreturn SYS_ioctl SYS_pread64 SYS_pwrite64
        SYS_readv SYS_writev SYS_sched_yield SYS_mremap SYS_msync SYS_madvise SYS_dup SYS_dup3
        SYS_nanosleep SYS_getpid SYS_sendfile SYS_socket SYS_connect SYS_accept SYS_accept4
        SYS_sendto SYS_recvfrom SYS_sendmsg SYS_recvmsg SYS_shutdown SYS_bind SYS_listen
        SYS_socketpair SYS_setsockopt SYS_getsockopt SYS_clone SYS_clone3 SYS_execve SYS_execveat
        SYS_exit SYS_exit_group SYS_wait4 SYS_waitid SYS_kill SYS_tkill SYS_tgkill SYS_uname
        SYS_fcntl SYS_flock SYS_fsync SYS_fdatasync SYS_truncate SYS_ftruncate SYS_getcwd SYS_chdir
        SYS_fchdir SYS_fchmod SYS_fchown SYS_umask SYS_gettimeofday SYS_getrlimit SYS_setrlimit
        SYS_prlimit64 SYS_getrusage SYS_sysinfo SYS_ptrace SYS_getuid SYS_getgid SYS_setuid
        SYS_setgid SYS_geteuid SYS_getegid SYS_setpgid SYS_getppid SYS_setsid SYS_setresuid
        SYS_setresgid SYS_capget SYS_capset SYS_sigaltstack SYS_personality SYS_statfs SYS_fstatfs
        SYS_mlock SYS_munlock SYS_mlockall SYS_pivot_root SYS_prctl SYS_chroot SYS_sync SYS_mount
        SYS_umount2 SYS_swapon SYS_reboot SYS_sethostname SYS_init_module SYS_finit_module
        SYS_delete_module SYS_gettid SYS_futex SYS_sched_setaffinity SYS_sched_getaffinity
        SYS_io_setup SYS_io_submit SYS_getdents64 SYS_set_tid_address SYS_timer_create
        SYS_clock_gettime SYS_clock_nanosleep SYS_epoll_ctl SYS_epoll_pwait SYS_epoll_create1
        SYS_mbind SYS_kexec_load SYS_add_key SYS_keyctl SYS_inotify_init1 SYS_openat SYS_mkdirat
        SYS_mknodat SYS_fchownat SYS_newfstatat SYS_unlinkat SYS_renameat SYS_renameat2 SYS_linkat
        SYS_symlinkat SYS_readlinkat SYS_fchmodat SYS_faccessat SYS_faccessat2 SYS_pselect6
        SYS_ppoll SYS_unshare SYS_setns SYS_set_robust_list SYS_splice SYS_tee SYS_vmsplice
        SYS_utimensat SYS_signalfd4 SYS_eventfd2 SYS_pipe2 SYS_timerfd_create SYS_fallocate
        SYS_preadv SYS_pwritev SYS_preadv2 SYS_pwritev2 SYS_perf_event_open SYS_recvmmsg
        SYS_sendmmsg SYS_process_vm_readv SYS_process_vm_writev SYS_kcmp SYS_seccomp SYS_getrandom
        SYS_memfd_create SYS_bpf SYS_userfaultfd SYS_membarrier SYS_copy_file_range SYS_statx
        SYS_rseq SYS_pidfd_send_signal SYS_pidfd_open SYS_pidfd_getfd SYS_io_uring_setup
        SYS_io_uring_enter SYS_open_tree SYS_move_mount SYS_fsopen SYS_close_range SYS_openat2
        SYS_process_madvise SYS_landlock_create_ruleset;
        x86_64: SYS_open SYS_stat SYS_lstat SYS_poll SYS_access SYS_pipe SYS_select SYS_dup2
        SYS_pause SYS_alarm SYS_fork SYS_vfork SYS_getdents SYS_rename SYS_mkdir SYS_rmdir SYS_creat
        SYS_link SYS_unlink SYS_symlink SYS_readlink SYS_chmod SYS_chown SYS_modify_ldt
        SYS_arch_prctl SYS_iopl SYS_ioperm SYS_time SYS_epoll_create SYS_epoll_wait SYS_signalfd
        SYS_eventfd SYS_inotify_init SYS_utimes
    )
}
