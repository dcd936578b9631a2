// Ordered execution per device. Work submitted to a stream runs on that
// stream's own thread, in submission order; callers return at once. Reading
// data back waits on an Event recorded after the work that produced it.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace vl {

class Event {
 public:
  void signal(const std::string& error = "");
  void wait();
  bool done();
  std::string error();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string error_;
};
using EventPtr = std::shared_ptr<Event>;

class Stream {
 public:
  // `thread_init` runs first on the stream's thread (e.g. to bind a CUDA device).
  Stream(std::string name, std::function<void()> thread_init = nullptr);
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Tasks must not throw; an escaped exception is reported on stderr.
  void submit(std::function<void()> task);
  // An event signaled once everything submitted so far has run.
  EventPtr record();
  // Work submitted after this call starts only once `event` is signaled.
  void wait_event(const EventPtr& event);
  // Blocks the caller until everything submitted so far has run.
  void synchronize();
  const std::string& name() const { return name_; }

 private:
  void loop();

  std::string name_;
  std::function<void()> thread_init_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool started_ = false;  // the thread starts on the first submit
};

}  // namespace vl
