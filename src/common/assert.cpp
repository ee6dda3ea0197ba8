#include <coraft/assert.hpp>
#include <coraft/error.hpp>

#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace coraft::detail {
namespace {

// Splits "a, f(b, c), \"x, y\"" into its top-level comma-separated expressions.
std::vector<std::string_view> split_names(std::string_view names) {
  std::vector<std::string_view> out;
  int depth = 0;
  bool in_string = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    char c = names[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '(' || c == '[' || c == '{' || c == '<') ++depth;
    if (c == ')' || c == ']' || c == '}' || c == '>') --depth;
    if (c == ',' && depth <= 0) {
      out.push_back(names.substr(start, i - start));
      start = i + 1;
    }
  }
  if (start < names.size()) out.push_back(names.substr(start));
  for (auto& n : out) {
    while (!n.empty() && n.front() == ' ') n.remove_prefix(1);
    while (!n.empty() && n.back() == ' ') n.remove_suffix(1);
  }
  return out;
}

}  // namespace

Failure::Failure(const char* kind, const char* condition, const char* file, int line,
                 const char* context_names) noexcept
    : kind_(kind), condition_(condition), file_(file), line_(line), context_names_(context_names) {}

void Failure::abort() noexcept {
  Text t;
  t.add("coraft: ")
      .add(kind_)
      .add(": ")
      .add(condition_)
      .add("\n  at ")
      .add(file_)
      .add(':')
      .add(line_);
  auto names = split_names(context_names_ ? context_names_ : "");
  for (int i = 0; i < value_text_.count; ++i) {
    std::string_view name = i < static_cast<int>(names.size()) ? names[static_cast<std::size_t>(i)]
                                                               : std::string_view("?");
    t.add("\n  ");
    if (!name.empty() && name.front() == '"') {
      t.add(value_text_.items[i]);  // a message, not an expression
    } else {
      t.add(name).add(" = ").add(value_text_.items[i]);
    }
  }
  t.add('\n');
  std::fwrite(t.str().data(), 1, t.str().size(), stderr);
  std::fflush(stderr);
  std::abort();
}

void fail_on_error(const Error& e) noexcept {
  Failure f("precondition violated", "result.ok()", "coraft::Result::value", 0, "error");
  f.values(e.message());
  f.abort();
}

}  // namespace coraft::detail
