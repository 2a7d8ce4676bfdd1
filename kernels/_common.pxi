# Included by every kernel module (Cython `include`): the element and index types, and the
# thread placement helper of their OpenMP regions.

from libc.stdint cimport int32_t, int64_t

ctypedef fused real:
    float
    double

ctypedef fused index_t:
    int32_t
    int64_t


# sum_j row[j]^2 in float64, for row_sq_norms (_rows.pyx) and gram_rows (_project.pyx) alike.
cdef inline double _sq_sum(const real* row, Py_ssize_t d) noexcept nogil:
    # four independent float64 accumulators (j mod 4), summed pairwise: one chain would be
    # bound by the latency of each addition
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, v
    cdef Py_ssize_t j, d4 = d - d % 4
    for j in range(0, d4, 4):
        v = row[j]
        a0 = a0 + v * v
        v = row[j + 1]
        a1 = a1 + v * v
        v = row[j + 2]
        a2 = a2 + v * v
        v = row[j + 3]
        a3 = a3 + v * v
    for j in range(d4, d):
        v = row[j]
        a0 = a0 + v * v
    return (a0 + a1) + (a2 + a3)


# After the CPUs idle, a VM's scheduler (Linux wake-affine placement) often wakes an OpenMP
# worker on the CPU of the thread that woke it and leaves both there for a second or more: a
# 2-thread region then runs 3-5x slower than one thread. fe_unstack(cpu of the calling thread),
# run by each thread at the start of a task, moves a worker found on that CPU elsewhere: it
# narrows its own affinity (the kernel migrates it at once) and restores it straight away, so
# no thread stays pinned. A no-op off Linux, in serial builds, and on thread 0.
cdef extern from *:
    """
    #if defined(__linux__) && defined(_OPENMP)
    #include <sched.h>
    #include <omp.h>
    static int fe_current_cpu(void) { return sched_getcpu(); }
    static void fe_unstack(int caller_cpu) {
        cpu_set_t allowed, away;
        if (caller_cpu < 0 || caller_cpu >= CPU_SETSIZE || omp_get_thread_num() == 0) return;
        if (sched_getcpu() != caller_cpu) return;
        if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
        away = allowed;
        CPU_CLR(caller_cpu, &away);
        if (CPU_COUNT(&away) == 0) return;
        if (sched_setaffinity(0, sizeof away, &away) == 0) sched_setaffinity(0, sizeof allowed, &allowed);
    }
    #else
    static int fe_current_cpu(void) { return -1; }
    static void fe_unstack(int caller_cpu) { (void)caller_cpu; }
    #endif
    """
    int fe_current_cpu() noexcept nogil
    void fe_unstack(int caller_cpu) noexcept nogil
