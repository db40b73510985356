#include <asyncmq/client.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/task.hpp>

#include <boost/json/serialize.hpp>

namespace asyncmq {

void TaskContext::progress(const boost::json::value& value) {
  if (value.is_number()) {
    double v = value.to_number<double>();
    if (!(v >= 0 && v <= 100))
      throw InvalidArgument("progress " + boost::json::serialize(value) + " is outside [0, 100]");
  }
  std::string text = boost::json::serialize(value);
  if (text.size() > 4096)
    throw InvalidArgument("progress is " + std::to_string(text.size()) +
                          " bytes of JSON, over the limit of 4096");
  if (reporter_) reporter_->progress(std::move(text));
}

void TaskContext::log(std::string_view line) {
  if (line.size() > 8192) line = line.substr(0, 8192);
  if (reporter_) reporter_->log(std::string(line));
}

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
