// SPIKE, not used by the product (bench/spike/seal_check.sh): run inside a container for 8 s,
// prints the processes whose /proc/<pid>/mem it can open read-write (never reads or writes it).
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(void) {
  time_t end = time(NULL) + 8;
  int found = 0;
  while (time(NULL) < end && found < 5) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while ((e = readdir(d))) {
      int pid = atoi(e->d_name);
      if (pid <= 1 || pid == getpid()) continue;
      char p[64], comm[64] = "", st[4096] = "";
      snprintf(p, sizeof p, "/proc/%d/comm", pid);
      int f = open(p, O_RDONLY); if (f < 0) continue; int n = read(f, comm, 63); close(f); if (n > 0) comm[n-1] = 0;
      if (!strcmp(comm, "sleep") || !strcmp(comm, "probe")) continue;
      snprintf(p, sizeof p, "/proc/%d/mem", pid);
      int m = open(p, O_RDWR);
      if (m >= 0) {
        snprintf(p, sizeof p, "/proc/%d/status", pid);
        f = open(p, O_RDONLY); n = f >= 0 ? read(f, st, sizeof st - 1) : 0; if (f >= 0) close(f); st[n > 0 ? n : 0] = 0;
        char *cap = strstr(st, "CapEff:\t");
        unsigned long long caps = cap ? strtoull(cap + 8, NULL, 16) : 0;
        printf("pid %d (%s): /proc/%d/mem opened read-write; CapEff %016llx\n", pid, comm, pid, caps);
        fflush(stdout);
        close(m);
        found++;
      }
    }
    closedir(d);
  }
  printf("probe done, %d found\n", found);
  return 0;
}
