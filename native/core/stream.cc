#include "core/stream.h"

#include <cstdio>
#include <exception>
#include <thread>

#include <pthread.h>

namespace vl {

void Event::signal(const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    error_ = error;
  }
  cv_.notify_all();
}

void Event::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
}

bool Event::done() {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

std::string Event::error() {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

Stream::Stream(std::string name, std::function<void()> thread_init)
    : name_(std::move(name)), thread_init_(std::move(thread_init)) {}

void Stream::submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
    // Streams live for the whole process; the thread is detached so that
    // process exit never waits on (or destroys) a running stream.
    if (!started_) {
      started_ = true;
      std::thread([this] { loop(); }).detach();
    }
  }
  cv_.notify_one();
}

EventPtr Stream::record() {
  auto event = std::make_shared<Event>();
  submit([event] { event->signal(); });
  return event;
}

void Stream::wait_event(const EventPtr& event) {
  submit([event] { event->wait(); });
}

void Stream::synchronize() { record()->wait(); }

void Stream::loop() {
  // Named for profilers and for telling compute threads from others (15 chars at most).
  pthread_setname_np(pthread_self(), ("vl:" + name_).substr(0, 15).c_str());
  if (thread_init_) thread_init_();
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return !queue_.empty(); });
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "visionllama: uncaught error on stream %s: %s\n", name_.c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "visionllama: uncaught error on stream %s\n", name_.c_str());
    }
  }
}

}  // namespace vl
