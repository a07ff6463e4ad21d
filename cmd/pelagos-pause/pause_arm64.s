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

#define AUDIT_ARCH		0xc00000b7 // AUDIT_ARCH_AARCH64

#include "pause.h"

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
