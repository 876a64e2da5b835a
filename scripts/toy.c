/*
 * toy: the whole userland of DAC's small test scene (scripts/scene.sh with DAC_SCENE_ROOTFS=toy).
 * A few kilobytes instead of busybox's megabyte, so image and filesystem fixtures stay tiny.
 * Freestanding x86_64 Linux: no libc, raw system calls.
 *
 *   gcc -static -Os -s -nostdlib -fno-builtin -fno-stack-protector -fno-asynchronous-unwind-tables \
 *       -o toy scripts/toy.c
 *
 * Called as `true` (any name ending in "true", or with no arguments): exits 0.
 * Otherwise it runs its arguments as a list of operations, left to right:
 *   out TEXT        write TEXT and a newline to stdout
 *   err TEXT        write TEXT and a newline to stderr
 *   put PATH TEXT   create or truncate PATH and write TEXT and a newline into it
 *   rm PATH         delete PATH
 *   sleep N         sleep N seconds
 *   tick N          every second print "tick I stdout" to stdout and "tick I stderr" to stderr,
 *                   N times (0: forever)
 *   exit N          exit with status N
 * SIGTERM and SIGINT end it at once with status 0 (as PID 1 of a container, a signal without a
 * handler would be ignored and `stop` would wait for its timeout).
 * An unknown operation prints a message to stderr and exits 2.
 */

typedef unsigned long u64;
typedef long i64;

#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_rt_sigaction 13
#define SYS_nanosleep 35
#define SYS_unlink 87
#define SYS_exit_group 231

static i64 sys3(i64 n, i64 a, i64 b, i64 c)
{
    i64 r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static i64 sys4(i64 n, i64 a, i64 b, i64 c, i64 d)
{
    i64 r;
    register i64 r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return r;
}

static void die_now(int code)
{
    for (;;)
        sys3(SYS_exit_group, code, 0, 0);
}

static u64 len(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

static int eq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static void put(int fd, const char *s) { sys3(SYS_write, fd, (i64)s, (i64)len(s)); }

static void line(int fd, const char *s)
{
    put(fd, s);
    put(fd, "\n");
}

static u64 num(const char *s)
{
    u64 n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (u64)(*s++ - '0');
    return n;
}

static char *fmt(char *end, u64 n)
{
    *--end = 0;
    do {
        *--end = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    return end;
}

static void nap(u64 secs)
{
    i64 ts[2] = {(i64)secs, 0};
    sys3(SYS_nanosleep, (i64)ts, 0, 0);
}

static void on_signal(int sig)
{
    (void)sig;
    die_now(0);
}

struct kaction {
    void (*handler)(int);
    u64 flags;
    void (*restorer)(void);
    u64 mask;
};

static void no_return(void) { die_now(0); }

static void catch(int sig)
{
    /* x86_64 refuses to deliver a signal without SA_RESTORER; the handler never returns, so the
     * restorer is never called. */
    struct kaction a = {on_signal, 0x04000000, no_return, 0};
    sys4(SYS_rt_sigaction, sig, (i64)&a, 0, 8);
}

static void tick(u64 count)
{
    char buf[32];
    for (u64 i = 1; count == 0 || i <= count; i++) {
        char *n = fmt(buf + sizeof buf, i);
        put(1, "tick ");
        put(1, n);
        put(1, " stdout\n");
        put(2, "tick ");
        put(2, n);
        put(2, " stderr\n");
        nap(1);
    }
}

static int run(int argc, char **argv)
{
    const char *me = argv[0] ? argv[0] : "";
    u64 l = len(me);
    if (argc < 2 || (l >= 4 && eq(me + l - 4, "true")))
        return 0;
    catch(15);
    catch(2);
    for (int i = 1; i < argc; i++) {
        const char *op = argv[i];
        const char *a = i + 1 < argc ? argv[i + 1] : 0;
        const char *b = i + 2 < argc ? argv[i + 2] : 0;
        if (eq(op, "out") && a) {
            line(1, a);
            i += 1;
        } else if (eq(op, "err") && a) {
            line(2, a);
            i += 1;
        } else if (eq(op, "put") && a && b) {
            /* O_WRONLY|O_CREAT|O_TRUNC */
            i64 fd = sys3(SYS_open, (i64)a, 01 | 0100 | 01000, 0644);
            if (fd < 0) {
                put(2, "toy: cannot create ");
                line(2, a);
                return 1;
            }
            line((int)fd, b);
            sys3(SYS_close, fd, 0, 0);
            i += 2;
        } else if (eq(op, "rm") && a) {
            if (sys3(SYS_unlink, (i64)a, 0, 0) < 0) {
                put(2, "toy: cannot remove ");
                line(2, a);
                return 1;
            }
            i += 1;
        } else if (eq(op, "sleep") && a) {
            nap(num(a));
            i += 1;
        } else if (eq(op, "tick") && a) {
            tick(num(a));
            i += 1;
        } else if (eq(op, "exit") && a) {
            return (int)num(a);
        } else {
            put(2, "toy: bad operation: ");
            line(2, op);
            return 2;
        }
    }
    return 0;
}

/* The kernel starts us with rsp -> argc, argv[0..argc-1], NULL, envp... */
__attribute__((used)) static void start_c(u64 *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    die_now(run(argc, argv));
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call start_c\n"
        "  hlt\n");
