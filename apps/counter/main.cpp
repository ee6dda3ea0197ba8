// coraft-counter: a replicated counter built on coraft. One binary: the server (`serve`), the
// client commands, and `local-cluster`, which runs a cluster of servers on this machine.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <coraft/sessions.hpp>

#include "client.hpp"
#include "server.hpp"

namespace counter {
namespace {

constexpr const char* exit_codes =
    "Exit status: 0 done; 1 definitely not done (refused, or no server answered before anything "
    "was sent); 2 usage error; 3 outcome unknown (a timeout or a leader lost after the request "
    "was sent: it may or may not have taken effect).";

struct ClientFlags {
  std::string cluster;
  double timeout_s = 10;
  bool json = false;
};

void add_client_flags(CLI::App& c, ClientFlags& f, bool json) {
  c.add_option("--cluster", f.cluster, "client addresses of the servers, host:port,host:port,...")
      ->required();
  c.add_option("--timeout", f.timeout_s, "seconds to keep trying, retries included")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
  if (json) c.add_flag("--json", f.json, "print JSON instead of a table");
  c.footer(exit_codes);
}

ClientOptions client_options(const ClientFlags& f) {
  ClientOptions o;
  std::string rest = f.cluster;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string one = rest.substr(0, comma);
    if (!one.empty()) o.cluster.push_back(one);
    rest = comma == std::string::npos ? std::string() : rest.substr(comma + 1);
  }
  o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(f.timeout_s * 1000));
  o.attempt_timeout = std::min(o.timeout, std::chrono::milliseconds(1000));
  return o;
}

int report_failure(const char* what, const Answer& a) {
  std::fprintf(stderr, "coraft-counter %s: %s%s\n", what,
               a.outcome == Outcome::unknown ? "outcome unknown: " : "", a.message.c_str());
  return static_cast<int>(a.outcome);
}

int print_status(const Answer& a, bool json) {
  if (json) {
    std::printf("%s\n", a.reply.text.c_str());
    return 0;
  }
  const auto j = nlohmann::json::parse(a.reply.text, nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "coraft-counter status: the server's answer is not JSON\n");
    return 1;
  }
  std::printf("%-22s %s\n", "server", j.value("id", nlohmann::json()).dump().c_str());
  for (const char* k : {"role", "term", "leader", "leader_client_address", "commit", "applied",
                        "last_log_index", "snapshot_index", "value"}) {
    const auto v = j.contains(k) ? j.at(k) : nlohmann::json();
    std::printf("%-22s %s\n", k, v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
  }
  std::printf("%-22s %s\n", "configuration",
              j.value("configuration", nlohmann::json()).dump().c_str());
  if (j.contains("peers") && !j["peers"].empty()) {
    std::printf("%-6s %-22s %-6s %-10s %-10s %-10s %s\n", "peer", "address", "voter", "match",
                "next", "state", "last contact");
    for (const auto& p : j["peers"]) {
      const std::string contact =
          p.contains("last_contact_ms") ? p.at("last_contact_ms").dump() + " ms" : "never";
      const auto number = [&p](const char* key) {
        return p.contains(key) ? p.at(key).dump() : std::string("?");
      };
      std::printf("%-6s %-22s %-6s %-10s %-10s %-10s %s\n", number("id").c_str(),
                  p.value("address", "").c_str(), p.value("voter", false) ? "yes" : "no",
                  number("match").c_str(), number("next").c_str(),
                  p.value("replication", "").c_str(), contact.c_str());
    }
  }
  if (j.contains("failure")) std::printf("%-22s %s\n", "failure", j.at("failure").dump().c_str());
  return 0;
}

std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

std::string self_path() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("coraft-counter") : p.string();
}

struct LocalFlags {
  std::uint32_t nodes = 3;
  std::string dir;
  std::uint32_t tick_ms = 50;
};

// Runs `nodes` servers until SIGINT or SIGTERM, then stops them by PID.
int run_local_cluster(const LocalFlags& f) {
  std::error_code ec;
  std::filesystem::create_directories(f.dir, ec);
  if (ec) {
    std::fprintf(stderr, "coraft-counter local-cluster: cannot create %s: %s\n", f.dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  std::vector<std::uint16_t> peer_ports, client_ports;
  for (std::uint32_t i = 0; i < f.nodes; ++i) {
    peer_ports.push_back(free_port());
    client_ports.push_back(free_port());
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  const std::string self = self_path();
  std::vector<pid_t> pids;
  std::string cluster;
  for (std::uint32_t i = 1; i <= f.nodes; ++i) {
    std::vector<std::string> args = {self,
                                     "serve",
                                     "--id",
                                     std::to_string(i),
                                     "--data",
                                     f.dir + "/n" + std::to_string(i),
                                     "--peer-listen",
                                     "127.0.0.1:" + std::to_string(peer_ports[i - 1]),
                                     "--client-listen",
                                     "127.0.0.1:" + std::to_string(client_ports[i - 1]),
                                     "--tick-ms",
                                     std::to_string(f.tick_ms)};
    for (std::uint32_t j = 1; j <= f.nodes; ++j) {
      if (j == i) continue;
      args.push_back("--peer");
      args.push_back(std::to_string(j) + "=127.0.0.1:" + std::to_string(peer_ports[j - 1]));
      args.push_back("--peer-client");
      args.push_back(std::to_string(j) + "=127.0.0.1:" + std::to_string(client_ports[j - 1]));
    }
    // The command line to start it again (without --bootstrap: a restart must never initialise
    // a lost data directory as a new cluster's; it rejoins empty instead).
    std::ofstream command(f.dir + "/n" + std::to_string(i) + ".command");
    for (const auto& a : args) command << "'" << a << "' ";
    command << "\n";
    args.push_back("--bootstrap");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(self.c_str(), argv.data());
      std::_Exit(127);
    }
    if (pid < 0) {
      std::fprintf(stderr, "coraft-counter local-cluster: cannot start a server\n");
      break;
    }
    pids.push_back(pid);
    std::ofstream(f.dir + "/n" + std::to_string(i) + ".pid") << pid << "\n";
    std::printf("server %u: pid %d, clients 127.0.0.1:%u, peers 127.0.0.1:%u, data %s/n%u\n", i,
                pid, client_ports[i - 1], peer_ports[i - 1], f.dir.c_str(), i);
    cluster += (cluster.empty() ? "" : ",") + std::string("127.0.0.1:") +
               std::to_string(client_ports[i - 1]);
  }
  std::ofstream(f.dir + "/cluster") << cluster << "\n";
  std::printf("--cluster %s\n", cluster.c_str());
  std::printf("running; Ctrl-C stops every server\n");
  std::fflush(stdout);
  std::size_t alive = pids.size();
  while (alive > 0 && pids.size() == f.nodes) {
    int sig = 0;
    if (::sigwait(&set, &sig) != 0) break;
    if (sig != SIGCHLD) break;
    // A server ended (or was killed by hand): report it and keep the others running.
    int status = 0;
    pid_t done;
    while ((done = ::waitpid(-1, &status, WNOHANG)) > 0) {
      for (std::size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != done) continue;
        std::printf("server %zu (pid %d) ended: %s %d\n", i + 1, done,
                    WIFSIGNALED(status) ? "signal" : "status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        std::fflush(stdout);
        pids[i] = -1;
        --alive;
      }
    }
  }
  for (pid_t pid : pids) {
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (pid_t pid : pids) {
    if (pid <= 0) continue;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > give_up) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::printf("stopped\n");
  return 0;
}

}  // namespace
}  // namespace counter

int main(int argc, char** argv) {
  using namespace counter;
  CLI::App app("coraft-counter: a replicated counter on coraft", "coraft-counter");
  app.require_subcommand(1);
  app.footer(exit_codes);

  ServeOptions serve;
  auto* s = app.add_subcommand("serve", "run one server until SIGTERM or SIGINT");
  s->add_option("--id", serve.id, "this server's id")->required()->check(CLI::Range(1, 1 << 30));
  s->add_option("--data", serve.data_dir, "data directory")->required();
  s->add_option("--peer-listen", serve.peer_listen, "host:port for peer traffic")
      ->capture_default_str();
  s->add_option("--client-listen", serve.client_listen, "host:port for clients")
      ->capture_default_str();
  s->add_option("--peer-advertise", serve.peer_advertise,
                "host:port where peers reach this server, when not --peer-listen (a proxy, a "
                "NAT); recorded in the configuration by membership changes it makes");
  s->add_option("--peer", serve.peers, "ID=host:port of a peer's peer address (repeat)");
  s->add_option("--peer-client", serve.peer_clients,
                "ID=host:port of a peer's client address, for redirects to the leader (repeat)");
  s->add_flag("--bootstrap", serve.bootstrap,
              "first start of a new cluster of this server and its --peer servers: initialise "
              "the data directory if it is empty. Only on the first start: a server restarted "
              "with it after losing its data would forget its vote");
  s->add_option("--cluster-id", serve.cluster_id, "the cluster's id, the same on every server")
      ->capture_default_str();
  s->add_option("--tls-ca", serve.tls_ca, "CA certificate (PEM) for mutual TLS between peers");
  s->add_option("--tls-cert", serve.tls_cert, "this server's certificate (PEM)");
  s->add_option("--tls-key", serve.tls_key, "this server's private key (PEM)");
  s->add_option("--tls-cluster-name", serve.tls_cluster_name,
                "the name every peer certificate must carry");
  s->add_option("--metrics", serve.metrics_listen, "host:port serving GET /metrics (Prometheus)");
  s->add_option("--tick-ms", serve.tick_ms, "milliseconds per tick")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  s->add_option("--election-ticks", serve.election_ticks, "election timeout in ticks")
      ->check(CLI::Range(2, 100000))
      ->capture_default_str();
  s->add_option("--heartbeat-ticks", serve.heartbeat_ticks, "heartbeat period in ticks")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  s->add_option("--snapshot-entries", serve.snapshot_threshold_entries,
                "entries applied between snapshots (0: only on demand)")
      ->capture_default_str();
  s->add_option("--client-connections-max", serve.client_connections_max,
                "client connections held at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  s->add_option("--pending-proposals-max", serve.pending_proposals_max,
                "proposals appended and not yet committed, at most")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  s->add_option("--sessions-max", serve.sessions_max,
                "client sessions kept at most; the least recently used expires first")
      ->check(CLI::Range(1u, coraft::SessionLimits::sessions_max_max))
      ->capture_default_str();
  s->add_option("--session-timeout-ms", serve.session_timeout_ms,
                "a session idle this long (by the time in its entries) expires; 0: never")
      ->capture_default_str();
  s->add_option("--log-level", serve.log_level, "debug, info, warn, error or off")
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  s->footer(
      "Exit status: 0 after a graceful stop; 1 the server could not start or failed; 2 "
      "usage error.");

  ClientFlags incr_flags;
  std::int64_t by = 1;
  auto* incr = app.add_subcommand("incr", "add to the counter exactly once; prints the new value");
  add_client_flags(*incr, incr_flags, false);
  incr->add_option("--by", by, "the amount to add")->capture_default_str();

  ClientFlags get_flags;
  bool stale = false;
  auto* get = app.add_subcommand("get", "print the value (linearizable unless --stale)");
  add_client_flags(*get, get_flags, false);
  get->add_flag("--stale", stale, "the contacted server's own value, without asking the leader");

  ClientFlags status_flags;
  auto* status = app.add_subcommand("status", "the contacted server's view of the cluster");
  add_client_flags(*status, status_flags, true);

  ClientFlags members_flags;
  std::uint64_t member_id = 0;
  std::string member_address;
  bool promote = false;
  auto* members = app.add_subcommand("members", "list or change the cluster's members");
  members->require_subcommand(1);
  auto* list = members->add_subcommand("list", "the configuration, as JSON");
  add_client_flags(*list, members_flags, false);
  auto* add_voter = members->add_subcommand("add-voter", "add a voting server");
  auto* add_learner = members->add_subcommand("add-learner", "add a non-voting server");
  auto* remove = members->add_subcommand("remove", "remove a server");
  for (auto* c : {add_voter, add_learner, remove}) {
    add_client_flags(*c, members_flags, false);
    c->add_option("--id", member_id, "the server's id")->required()->check(CLI::Range(1, 1 << 30));
  }
  for (auto* c : {add_voter, add_learner}) {
    c->add_option("--address", member_address, "its peer address, host:port")->required();
  }
  add_learner->add_flag("--promote", promote, "make it a voter once it has caught up");

  ClientFlags transfer_flags;
  std::uint64_t transfer_to = 0;
  auto* transfer = app.add_subcommand("transfer", "hand leadership to another voter");
  add_client_flags(*transfer, transfer_flags, false);
  transfer->add_option("--to", transfer_to, "the new leader (default: the most up-to-date)");

  LocalFlags local;
  auto* lc = app.add_subcommand("local-cluster", "run servers on this machine until Ctrl-C");
  lc->add_option("--nodes", local.nodes, "servers")
      ->check(CLI::IsMember({3, 5}))
      ->capture_default_str();
  lc->add_option("--dir", local.dir, "where their data directories go")->required();
  lc->add_option("--tick-ms", local.tick_ms, "milliseconds per tick")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string sub = argc > 1 && argv[1][0] != '-' ? std::string(" ") + argv[1] : std::string();
    std::fprintf(stderr, "coraft-counter%s: %s\nsee: coraft-counter%s --help\n", sub.c_str(),
                 e.what(), sub.c_str());
    return 2;
  }

  if (s->parsed()) return run_serve(serve);
  if (lc->parsed()) return run_local_cluster(local);
  if (incr->parsed()) {
    Client c(client_options(incr_flags));
    Answer a = c.incr(by);
    // The session has no further use whatever the outcome: leave no idle session behind.
    c.close_session();
    if (a.outcome != Outcome::ok) return report_failure("incr", a);
    std::printf("%lld\n", static_cast<long long>(a.reply.value));
    return 0;
  }
  if (get->parsed()) {
    Client c(client_options(get_flags));
    Answer a = c.get(stale);
    if (a.outcome != Outcome::ok) return report_failure("get", a);
    std::printf("%lld\n", static_cast<long long>(a.reply.value));
    return 0;
  }
  if (status->parsed()) {
    Client c(client_options(status_flags));
    Request r;
    r.op = Op::status;
    Answer a = c.call(r, true);
    if (a.outcome != Outcome::ok) return report_failure("status", a);
    return print_status(a, status_flags.json);
  }
  if (transfer->parsed()) {
    Client c(client_options(transfer_flags));
    Request r;
    r.op = Op::transfer;
    r.target = transfer_to;
    Answer a = c.call(r, false);
    if (a.outcome != Outcome::ok) return report_failure("transfer", a);
    std::printf("leader: %llu %s\n", static_cast<unsigned long long>(a.reply.leader),
                a.reply.leader_address.c_str());
    return 0;
  }
  if (members->parsed()) {
    Client c(client_options(members_flags));
    Request r;
    r.target = member_id;
    r.address = member_address;
    r.promote = promote;
    bool any = false;
    if (list->parsed()) {
      r.op = Op::members;
      any = true;
    } else if (add_voter->parsed()) {
      r.op = Op::add_voter;
    } else if (add_learner->parsed()) {
      r.op = Op::add_learner;
    } else {
      r.op = Op::remove_server;
    }
    Answer a = c.call(r, any);
    if (a.outcome != Outcome::ok) return report_failure("members", a);
    std::printf("%s\n", a.reply.text.c_str());
    return 0;
  }
  return 2;
}
