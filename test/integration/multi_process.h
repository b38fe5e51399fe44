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

// A port nobody listens on right now (the kernel's pick for port 0).
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
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
