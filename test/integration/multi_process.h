// Helpers for tests that run one real process per rank on loopback.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <vector>

namespace lshmoe::test_support {

// A port nobody uses right now, below the kernel's ephemeral range (from
// 32768), so that the outgoing connections of tests running in parallel
// cannot take it between this check and its use.
inline int free_port() {
  static unsigned state = unsigned(getpid()) * 2654435761u;
  for (int attempt = 0; attempt < 200; ++attempt) {
    state = state * 1664525u + 1013904223u;
    const int port = 20000 + int((state >> 8) % 12000u);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(uint16_t(port));
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (ok) return port;
  }
  return 0;
}

// Runs fn(rank) in one child process per listed rank; returns their exit
// codes (a child that does not finish in time is killed: 124).
inline std::vector<int> run_ranks(const std::vector<int>& ranks, const std::function<int(int)>& fn,
                                  int limit_ms = 20000) {
  std::vector<pid_t> pids;
  for (int r : ranks) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<pid_t>().swap(pids);  // the parent's, not the child's to keep
      _exit(fn(r));
    }
    pids.push_back(pid);
  }
  std::vector<int> codes(pids.size(), -1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
  size_t done = 0;
  while (done < pids.size()) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (codes[i] != -1) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ++done;
      } else if (std::chrono::steady_clock::now() > deadline) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], &status, 0);
        codes[i] = 124;
        ++done;
      }
    }
    usleep(2000);
  }
  return codes;
}

}  // namespace lshmoe::test_support
