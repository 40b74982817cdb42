// src/list/shareable_list.cpp — ShareableList: a named block in CPython's
// ShareableList layout, over the checked view of shareable_list_view.hpp.
#include "shmkit/shareable_list.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "list/shareable_list_view.hpp"
#include "platform/platform.hpp"

namespace shmkit {

ShareableList::ShareableList() noexcept = default;
ShareableList::ShareableList(ShareableList&&) noexcept = default;
ShareableList& ShareableList::operator=(ShareableList&&) noexcept = default;
ShareableList::~ShareableList() = default;

ShareableList::ShareableList(SharedMemory shm, std::unique_ptr<detail::ShareableListView> view) noexcept
    : shm_(std::move(shm)), view_(std::move(view)) {}

namespace {

// Fills a freshly created block and wraps it; unlinks the block if that
// fails, so a failed create leaves nothing behind.
ShareableList finish_create(SharedMemory shm, const std::vector<Item>& items, const detail::ListPlan& plan) {
  try {
    detail::write_list(shm.buf(), items, plan);
    return ShareableList::attach(std::move(shm));
  } catch (...) {
    try {
      shm.unlink();
    } catch (...) {
    }
    throw;
  }
}

}  // namespace

ShareableList ShareableList::create(std::vector<Item> items) {
  const auto plan = detail::plan_list(items, "(random name)");
  return finish_create(SharedMemory::create(plan.block_size), items, plan);
}

ShareableList ShareableList::create(std::string_view name, std::vector<Item> items) {
  SharedMemory::validate_name(name);
  const auto plan = detail::plan_list(items, name);
  return finish_create(SharedMemory::create(name, plan.block_size), items, plan);
}

ShareableList ShareableList::attach(std::string_view name) { return attach(SharedMemory::attach(name)); }

ShareableList ShareableList::attach(SharedMemory block) {
  if (block.closed()) {
    throw std::invalid_argument("shmkit: ShareableList::attach: the SharedMemory handle is closed");
  }
  std::string label = block.name().empty() ? std::string("(anonymous)") : block.name();
  auto view = std::make_unique<detail::ShareableListView>(block.buf(), std::move(label));
  return ShareableList(std::move(block), std::move(view));
}

std::size_t ShareableList::size() const noexcept { return view_ ? view_->size() : 0; }

std::size_t ShareableList::normalize(std::ptrdiff_t index, const char* what) const {
  const auto n = static_cast<std::ptrdiff_t>(size());
  const std::ptrdiff_t i = index < 0 ? index + n : index;
  if (i < 0 || i >= n) {
    throw std::out_of_range("shmkit: ShareableList " + platform::quoted(name()) + ": " + what + " " +
                            std::to_string(index) + " out of range (size " + std::to_string(n) + ")");
  }
  return static_cast<std::size_t>(i);
}

Item ShareableList::get(std::ptrdiff_t index) const { return view_->get(normalize(index, "index")); }

void ShareableList::get(std::ptrdiff_t index, Item& out) const {
  view_->read(normalize(index, "index"), out);
}

void ShareableList::set(std::ptrdiff_t index, const Item& value) {
  const std::size_t i = normalize(index, "assignment index");
  if (shm_.read_only()) {
    throw std::logic_error("shmkit: ShareableList " + platform::quoted(name()) +
                           ": the block is attached read-only");
  }
  view_->set(i, value);
}

std::size_t ShareableList::count(const Item& value) const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < size(); ++i) n += python_equal(value, view_->get(i)) ? 1 : 0;
  return n;
}

std::size_t ShareableList::index(const Item& value) const {
  for (std::size_t i = 0; i < size(); ++i) {
    if (python_equal(value, view_->get(i))) return i;
  }
  throw std::invalid_argument("shmkit: ShareableList " + platform::quoted(name()) + ": " +
                              python_repr(value) + " not in this container");
}

std::string ShareableList::format() const {
  std::string s;
  for (std::size_t i = 0; i < size(); ++i) s += view_->format(i);
  return s;
}

std::string ShareableList::format(std::ptrdiff_t index) const {
  return view_->format(normalize(index, "index"));
}

std::vector<Item> ShareableList::to_vector() const {
  std::vector<Item> v;
  v.reserve(size());
  for (std::size_t i = 0; i < size(); ++i) v.push_back(view_->get(i));
  return v;
}

}  // namespace shmkit
