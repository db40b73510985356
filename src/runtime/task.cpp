#include <asyncmq/client.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/task.hpp>

namespace asyncmq {

TaskRegistry& TaskRegistry::add_task(Task task) {
  validate_name("task", task.name);
  if (tasks_.count(task.name)) throw InvalidArgument("task '" + task.name + "' is registered twice");
  std::string name = task.name;
  tasks_.emplace(std::move(name), std::move(task));
  return *this;
}

const Task* TaskRegistry::find(std::string_view name) const {
  auto it = tasks_.find(name);
  return it == tasks_.end() ? nullptr : &it->second;
}

std::vector<std::string> TaskRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, task] : tasks_) out.push_back(name);
  return out;
}

TaskRegistry& TaskRegistry::merge(const TaskRegistry& other) {
  for (const auto& [name, task] : other.tasks_) add_task(task);
  return *this;
}

}  // namespace asyncmq
