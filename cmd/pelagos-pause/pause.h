// Constants and data shared by pause_amd64.s and pause_arm64.s, which
// define AUDIT_ARCH and the SYS_* numbers of their architecture first.

#define PR_SET_DUMPABLE		4
#define PR_SET_NAME		15
#define PR_CAPBSET_DROP		24
#define PR_SET_NO_NEW_PRIVS	38
#define PR_CAP_AMBIENT		47
#define PR_CAP_AMBIENT_CLEAR_ALL	4
#define SECCOMP_SET_MODE_FILTER	1
#define SIG_BLOCK		0
#define WNOHANG			1
#define SIGINT			2
#define SIGTERM			15
#define SIGCHLD			17

// The seccomp filter: the architecture (AUDIT_ARCH), then the seven calls
// the wait loop can make (SYS_*, defined by the including file); anything
// else kills the process. Jump offsets count from the next instruction.
#define BPF_LD_W_ABS	0x20
#define BPF_JEQ_K	0x15
#define BPF_RET_K	0x06
#define RET_KILL_PROCESS	0x80000000
#define RET_ALLOW	0x7fff0000

#define INSN(i, code, jt, jf, k) DATA ·filter+(i*8)(SB)/2, $code; DATA ·filter+(i*8+2)(SB)/1, $jt; DATA ·filter+(i*8+3)(SB)/1, $jf; DATA ·filter+(i*8+4)(SB)/4, $k

INSN(0, BPF_LD_W_ABS, 0, 0, 4)
INSN(1, BPF_JEQ_K, 0, 8, AUDIT_ARCH)
INSN(2, BPF_LD_W_ABS, 0, 0, 0)
INSN(3, BPF_JEQ_K, 7, 0, SYS_rt_sigtimedwait)
INSN(4, BPF_JEQ_K, 6, 0, SYS_wait4)
INSN(5, BPF_JEQ_K, 5, 0, SYS_exit)
INSN(6, BPF_JEQ_K, 4, 0, SYS_exit_group)
INSN(7, BPF_JEQ_K, 3, 0, SYS_rt_sigreturn)
INSN(8, BPF_JEQ_K, 2, 0, SYS_restart_syscall)
INSN(9, BPF_JEQ_K, 1, 0, SYS_close)
INSN(10, BPF_RET_K, 0, 0, RET_KILL_PROCESS)
INSN(11, BPF_RET_K, 0, 0, RET_ALLOW)
GLOBL ·filter(SB), RODATA|NOPTR, $96

// struct sock_fprog: length, then a pointer to the instructions.
DATA ·fprog+0(SB)/2, $12
DATA ·fprog+8(SB)/8, $·filter(SB)
GLOBL ·fprog(SB), RODATA, $16

// capset(2) header (_LINUX_CAPABILITY_VERSION_3, this process) and two
// zeroed data structs: no effective, permitted or inheritable capability.
DATA ·capHeader+0(SB)/4, $0x20080522
DATA ·capHeader+4(SB)/4, $0
GLOBL ·capHeader(SB), NOPTR, $8
GLOBL ·capData(SB), NOPTR, $24

DATA ·allSignals+0(SB)/8, $-1
GLOBL ·allSignals(SB), RODATA|NOPTR, $8
DATA ·waitSignals+0(SB)/8, $((1<<(SIGCHLD-1))|(1<<(SIGTERM-1))|(1<<(SIGINT-1)))
GLOBL ·waitSignals(SB), RODATA|NOPTR, $8

// "." for chroot.
DATA ·dot+0(SB)/2, $0x002e
GLOBL ·dot(SB), RODATA|NOPTR, $2

// "pelagos-pause" for PR_SET_NAME.
DATA ·name+0(SB)/8, $"pelagos-"
DATA ·name+8(SB)/8, $"pause\x00\x00\x00"
GLOBL ·name(SB), RODATA|NOPTR, $16
