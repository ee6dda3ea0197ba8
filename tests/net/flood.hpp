// A hostile client for tests: a thread keeping many connections open to one port, silent or
// trickling a byte at a time, and opening a new one as soon as the transport closes one.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace coraft::net::test {

class Flood {
 public:
  struct Options {
    std::uint16_t port = 0;
    std::size_t connections = 100;
    // Every other connection sends one byte of a frame header every trickle_interval (never
    // completing a frame); the rest send nothing.
    bool trickle = true;
    std::chrono::milliseconds trickle_interval{100};
    // Connections come from these addresses in turn (all of 127.0.0.0/8 is this host).
    std::vector<std::string> sources{"127.0.0.1"};
    // Bounds: the flood stops by itself after this long or this many connections.
    std::chrono::milliseconds duration_max{std::chrono::seconds(30)};
    std::uint64_t connects_max = 10'000'000;
  };

  explicit Flood(Options o) : options_(std::move(o)), slots_(options_.connections) {
    thread_ = std::thread([this] { run(); });
  }
  ~Flood() { stop(); }
  Flood(const Flood&) = delete;
  Flood& operator=(const Flood&) = delete;

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Connections opened so far (each closed one is replaced by a new one).
  [[nodiscard]] std::uint64_t connects() const { return connects_.load(); }
  // Connections open at the last pass.
  [[nodiscard]] std::size_t open() const { return open_.load(); }

 private:
  struct Slot {
    int fd = -1;
    std::size_t sent = 0;  // bytes trickled on this connection
    std::chrono::steady_clock::time_point next_byte{};
  };

  int dial(std::size_t i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, options_.sources[i % options_.sources.size()].c_str(), &from.sin_addr);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(options_.port);
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
        (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)) {
      ::close(fd);
      return -1;
    }
    ++connects_;
    return fd;
  }

  // True when the far end closed `fd` (or it failed).
  static bool gone(int fd) {
    char c;
    ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n == 0) return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN;
  }

  void run() {
    auto start = std::chrono::steady_clock::now();
    while (!stop_ && std::chrono::steady_clock::now() - start < options_.duration_max &&
           connects_ < options_.connects_max) {
      auto now = std::chrono::steady_clock::now();
      std::size_t open = 0;
      bool idle = true;
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        Slot& s = slots_[i];
        if (s.fd >= 0 && gone(s.fd)) {
          ::close(s.fd);
          s.fd = -1;
        }
        if (s.fd < 0) {
          s.fd = dial(i);
          s.sent = 0;
          s.next_byte = now + options_.trickle_interval;
          idle = false;
        } else if (options_.trickle && i % 2 == 1 && now >= s.next_byte) {
          // Byte by byte: a header announcing one segment of 100 words, then zeros, so the
          // frame completes only after 808 bytes.
          static constexpr char header[8] = {0, 0, 0, 0, 100, 0, 0, 0};
          char byte = s.sent < sizeof header ? header[s.sent] : 0;
          if (::send(s.fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) ++s.sent;
          s.next_byte = now + options_.trickle_interval;
        }
        open += s.fd >= 0;
      }
      open_ = open;
      if (idle) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (Slot& s : slots_) {
      if (s.fd >= 0) ::close(s.fd);
    }
  }

  Options options_;
  std::vector<Slot> slots_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> connects_{0};
  std::atomic<std::size_t> open_{0};
  std::thread thread_;
};

}  // namespace coraft::net::test
