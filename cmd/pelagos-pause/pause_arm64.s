#include "textflag.h"

// System call numbers (arm64, the generic table).
#define SYS_fchdir		50
#define SYS_chroot		51
#define SYS_close		57
#define SYS_capset		91
#define SYS_exit		93
#define SYS_exit_group		94
#define SYS_restart_syscall	128
#define SYS_rt_sigprocmask	135
#define SYS_rt_sigtimedwait	137
#define SYS_rt_sigreturn	139
#define SYS_prctl		167
#define SYS_wait4		260
#define SYS_seccomp		277
#define SYS_close_range		436

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

// The seccomp filter, as in pause_amd64.s.
#define BPF_LD_W_ABS	0x20
#define BPF_JEQ_K	0x15
#define BPF_RET_K	0x06
#define AUDIT_ARCH_AARCH64	0xc00000b7
#define RET_KILL_PROCESS	0x80000000
#define RET_ALLOW	0x7fff0000

#define INSN(i, code, jt, jf, k) DATA ·filter+(i*8)(SB)/2, $code; DATA ·filter+(i*8+2)(SB)/1, $jt; DATA ·filter+(i*8+3)(SB)/1, $jf; DATA ·filter+(i*8+4)(SB)/4, $k

INSN(0, BPF_LD_W_ABS, 0, 0, 4)
INSN(1, BPF_JEQ_K, 0, 8, AUDIT_ARCH_AARCH64)
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

DATA ·fprog+0(SB)/2, $12
DATA ·fprog+8(SB)/8, $·filter(SB)
GLOBL ·fprog(SB), RODATA, $16

DATA ·capHeader+0(SB)/4, $0x20080522
DATA ·capHeader+4(SB)/4, $0
GLOBL ·capHeader(SB), NOPTR, $8
GLOBL ·capData(SB), NOPTR, $24

DATA ·allSignals+0(SB)/8, $-1
GLOBL ·allSignals(SB), RODATA|NOPTR, $8
DATA ·waitSignals+0(SB)/8, $((1<<(SIGCHLD-1))|(1<<(SIGTERM-1))|(1<<(SIGINT-1)))
GLOBL ·waitSignals(SB), RODATA|NOPTR, $8

DATA ·dot+0(SB)/2, $0x002e
GLOBL ·dot(SB), RODATA|NOPTR, $2

// "pelagos-pause" for PR_SET_NAME.
DATA ·name+0(SB)/8, $"pelagos-"
DATA ·name+8(SB)/8, $"pause\x00\x00\x00"
GLOBL ·name(SB), RODATA|NOPTR, $16

// R19 holds the number of the step in progress, R20 the capability being
// dropped; the kernel preserves every register but R0 across SVC.
TEXT ·entry(SB), NOSPLIT|NOFRAME, $0-0
	// Its name in ps: run from /proc/self/fd/N it would be "N".
	MOVD	$SYS_prctl, R8
	MOVD	$PR_SET_NAME, R0
	MOVD	$·name(SB), R1
	SVC

	MOVD	$10, R19
	MOVD	$SYS_close_range, R8
	MOVD	$5, R0
	MOVD	$-1, R1
	MOVD	$0, R2
	SVC
	CMP	$0, R0
	BNE	fail

	MOVD	$11, R19
	MOVD	$SYS_fchdir, R8
	MOVD	$3, R0
	SVC
	CMP	$0, R0
	BNE	fail
	MOVD	$12, R19
	MOVD	$SYS_chroot, R8
	MOVD	$·dot(SB), R0
	SVC
	CMP	$0, R0
	BNE	fail
	MOVD	$13, R19
	MOVD	$SYS_close, R8
	MOVD	$3, R0
	SVC
	CMP	$0, R0
	BNE	fail

	MOVD	$14, R19
	MOVD	$0, R20
bounding:
	MOVD	$SYS_prctl, R8
	MOVD	$PR_CAPBSET_DROP, R0
	MOVD	R20, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	SVC
	CMN	$22, R0
	BEQ	ambient
	CMP	$0, R0
	BNE	fail
	ADD	$1, R20
	CMP	$64, R20
	BLT	bounding
	B	fail
ambient:
	MOVD	$15, R19
	MOVD	$SYS_prctl, R8
	MOVD	$PR_CAP_AMBIENT, R0
	MOVD	$PR_CAP_AMBIENT_CLEAR_ALL, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	SVC
	CMP	$0, R0
	BNE	fail
	MOVD	$16, R19
	MOVD	$SYS_capset, R8
	MOVD	$·capHeader(SB), R0
	MOVD	$·capData(SB), R1
	SVC
	CMP	$0, R0
	BNE	fail

	MOVD	$17, R19
	MOVD	$SYS_prctl, R8
	MOVD	$PR_SET_DUMPABLE, R0
	MOVD	$0, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	SVC
	CMP	$0, R0
	BNE	fail
	MOVD	$18, R19
	MOVD	$SYS_prctl, R8
	MOVD	$PR_SET_NO_NEW_PRIVS, R0
	MOVD	$1, R1
	SVC
	CMP	$0, R0
	BNE	fail

	MOVD	$19, R19
	MOVD	$SYS_rt_sigprocmask, R8
	MOVD	$SIG_BLOCK, R0
	MOVD	$·allSignals(SB), R1
	MOVD	$0, R2
	MOVD	$8, R3
	SVC
	CMP	$0, R0
	BNE	fail

	MOVD	$20, R19
	MOVD	$SYS_seccomp, R8
	MOVD	$SECCOMP_SET_MODE_FILTER, R0
	MOVD	$0, R1
	MOVD	$·fprog(SB), R2
	SVC
	CMP	$0, R0
	BNE	fail

	MOVD	$21, R19
	MOVD	$SYS_close, R8
	MOVD	$4, R0
	SVC
	CMP	$0, R0
	BNE	fail

wait:
	MOVD	$SYS_rt_sigtimedwait, R8
	MOVD	$·waitSignals(SB), R0
	MOVD	$0, R1
	MOVD	$0, R2
	MOVD	$8, R3
	SVC
	CMP	$SIGCHLD, R0
	BEQ	reap
	CMP	$SIGTERM, R0
	BEQ	done
	CMP	$SIGINT, R0
	BEQ	done
	B	wait
reap:
	MOVD	$SYS_wait4, R8
	MOVD	$-1, R0
	MOVD	$0, R1
	MOVD	$WNOHANG, R2
	MOVD	$0, R3
	SVC
	CMP	$0, R0
	BGT	reap
	B	wait
done:
	MOVD	$0, R19
fail:
	MOVD	R19, R0
	MOVD	$SYS_exit_group, R8
	SVC
	B	fail

TEXT ·filterAddr(SB), NOSPLIT, $0-8
	MOVD	$·filter(SB), R0
	MOVD	R0, ret+0(FP)
	RET
