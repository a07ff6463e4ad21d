#include "textflag.h"

// System call numbers (x86-64).
#define SYS_close		3
#define SYS_rt_sigprocmask	14
#define SYS_rt_sigreturn	15
#define SYS_exit		60
#define SYS_wait4		61
#define SYS_fchdir		81
#define SYS_capset		126
#define SYS_rt_sigtimedwait	128
#define SYS_prctl		157
#define SYS_chroot		161
#define SYS_restart_syscall	219
#define SYS_exit_group		231
#define SYS_seccomp		317
#define SYS_close_range		436

#define AUDIT_ARCH		0xc000003e // AUDIT_ARCH_X86_64

#include "pause.h"

// R12 holds the number of the step in progress: a failed step exits with
// it. Registers other than AX, CX and R11 survive SYSCALL.
TEXT ·entry(SB), NOSPLIT|NOFRAME, $0-0
	// Its name in ps: run from /proc/self/fd/N it would be "N".
	MOVQ	$SYS_prctl, AX
	MOVQ	$PR_SET_NAME, DI
	LEAQ	·name(SB), SI
	SYSCALL

	// Nothing but 0-4 may stay open: whatever the agent itself inherited
	// without close-on-exec would otherwise be held here.
	MOVQ	$10, R12
	MOVQ	$SYS_close_range, AX
	MOVQ	$5, DI
	MOVQ	$-1, SI
	XORQ	DX, DX
	SYSCALL
	CMPQ	AX, $0
	JNE	fail

	// The root: the empty read-only tmpfs on fd 3.
	MOVQ	$11, R12
	MOVQ	$SYS_fchdir, AX
	MOVQ	$3, DI
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	MOVQ	$12, R12
	MOVQ	$SYS_chroot, AX
	LEAQ	·dot(SB), DI
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	MOVQ	$13, R12
	MOVQ	$SYS_close, AX
	MOVQ	$3, DI
	SYSCALL
	CMPQ	AX, $0
	JNE	fail

	// The bounding set, capability by capability until the kernel knows
	// no more (EINVAL).
	MOVQ	$14, R12
	XORQ	R13, R13
bounding:
	MOVQ	$SYS_prctl, AX
	MOVQ	$PR_CAPBSET_DROP, DI
	MOVQ	R13, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	CMPQ	AX, $-22
	JEQ	ambient
	CMPQ	AX, $0
	JNE	fail
	INCQ	R13
	CMPQ	R13, $64
	JLT	bounding
	JMP	fail
ambient:
	MOVQ	$15, R12
	MOVQ	$SYS_prctl, AX
	MOVQ	$PR_CAP_AMBIENT, DI
	MOVQ	$PR_CAP_AMBIENT_CLEAR_ALL, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	MOVQ	$16, R12
	MOVQ	$SYS_capset, AX
	LEAQ	·capHeader(SB), DI
	LEAQ	·capData(SB), SI
	SYSCALL
	CMPQ	AX, $0
	JNE	fail

	MOVQ	$17, R12
	MOVQ	$SYS_prctl, AX
	MOVQ	$PR_SET_DUMPABLE, DI
	XORQ	SI, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	MOVQ	$18, R12
	MOVQ	$SYS_prctl, AX
	MOVQ	$PR_SET_NO_NEW_PRIVS, DI
	MOVQ	$1, SI
	SYSCALL
	CMPQ	AX, $0
	JNE	fail

	MOVQ	$19, R12
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$SIG_BLOCK, DI
	LEAQ	·allSignals(SB), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	SYSCALL
	CMPQ	AX, $0
	JNE	fail

	MOVQ	$20, R12
	MOVQ	$SYS_seccomp, AX
	MOVQ	$SECCOMP_SET_MODE_FILTER, DI
	XORQ	SI, SI
	LEAQ	·fprog(SB), DX
	SYSCALL
	CMPQ	AX, $0
	JNE	fail

	// Locked down: EOF on the readiness pipe tells the agent.
	MOVQ	$21, R12
	MOVQ	$SYS_close, AX
	MOVQ	$4, DI
	SYSCALL
	CMPQ	AX, $0
	JNE	fail

wait:
	MOVQ	$SYS_rt_sigtimedwait, AX
	LEAQ	·waitSignals(SB), DI
	XORQ	SI, SI
	XORQ	DX, DX
	MOVQ	$8, R10
	SYSCALL
	CMPQ	AX, $SIGCHLD
	JEQ	reap
	CMPQ	AX, $SIGTERM
	JEQ	done
	CMPQ	AX, $SIGINT
	JEQ	done
	JMP	wait
reap:
	MOVQ	$SYS_wait4, AX
	MOVQ	$-1, DI
	XORQ	SI, SI
	MOVQ	$WNOHANG, DX
	XORQ	R10, R10
	SYSCALL
	CMPQ	AX, $0
	JGT	reap
	JMP	wait
done:
	XORQ	R12, R12
fail:
	MOVQ	R12, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	JMP	fail

TEXT ·filterAddr(SB), NOSPLIT, $0-8
	LEAQ	·filter(SB), AX
	MOVQ	AX, ret+0(FP)
	RET
