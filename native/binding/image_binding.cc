// Image preprocessing on 8-bit pixels, off the JavaScript thread: the
// arguments are checked here, cpu/image_resample.cc does the work on a libuv
// worker, and the promise settles on the JavaScript thread.
#include <memory>
#include <string>

#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "core/error.h"
#include "cpu/image_resample.h"
#include "cpu/jpeg_decode.h"

namespace vl {
namespace binding {
namespace {

class ResampleWorker : public Napi::AsyncWorker {
 public:
  ResampleWorker(Napi::Env env, Napi::Uint8Array pixels, Napi::Float32Array out, const cpu::ResampleSpec& spec)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        pixels_(Napi::Persistent(pixels)),
        out_(Napi::Persistent(out)),
        src_(pixels.Data()),
        dst_(out.Data()),
        spec_(spec) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  // Runs on a worker: plain memory only (the references keep both arrays alive).
  void Execute() override {
    try {
      cpu::resample_normalize(src_, spec_, dst_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(out_.Value()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), ErrorCode::Argument, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> pixels_;
  Napi::Reference<Napi::Float32Array> out_;
  const uint8_t* src_;
  float* dst_;
  cpu::ResampleSpec spec_;
};

// Decodes a JPEG on a worker; settles with {data, width, height} (RGB
// bytes), or null when libjpeg-turbo declined it or is not available.
class JpegWorker : public Napi::AsyncWorker {
 public:
  JpegWorker(Napi::Env env, Napi::Uint8Array bytes, int64_t max_pixels)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        bytes_(Napi::Persistent(bytes)),
        src_(bytes.Data()),
        size_(bytes.ElementLength()),
        max_pixels_(max_pixels) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override { result_ = cpu::decode_jpeg_rgb(src_, size_, max_pixels_, &pixels_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (result_ != cpu::JpegResult::kDecoded) {
      deferred_.Resolve(env.Null());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, pixels_.rgb.data(), pixels_.rgb.size()));
    o.Set("width", Napi::Number::New(env, pixels_.width));
    o.Set("height", Napi::Number::New(env, pixels_.height));
    deferred_.Resolve(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> bytes_;
  const uint8_t* src_;
  size_t size_;
  int64_t max_pixels_;
  cpu::JpegResult result_ = cpu::JpegResult::kUnavailable;
  cpu::JpegPixels pixels_;
};

// decodeJpeg(bytes: Uint8Array, maxPixels) -> Promise<{data, width, height} | null>
Napi::Value decode_jpeg(const Napi::CallbackInfo& info) {
  Args a{info, "decodeJpeg"};
  VL_CHECK(a.at(0).IsTypedArray() && a.at(0).As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array,
           ErrorCode::Argument, "decodeJpeg: expected the file's bytes as a Uint8Array (or Buffer)");
  const int64_t max_pixels = a.integer(1, "maxPixels");
  VL_CHECK(max_pixels > 0, ErrorCode::Argument, "decodeJpeg: maxPixels must be positive, got ", max_pixels);
  auto* worker = new JpegWorker(info.Env(), a.at(0).As<Napi::Uint8Array>(), max_pixels);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// jpegDecoder() -> the loaded library's name, or null.
Napi::Value jpeg_decoder(const Napi::CallbackInfo& info) {
  std::string name;
  return cpu::jpeg_available(&name) ? Napi::String::New(info.Env(), name) : info.Env().Null();
}

int size_arg(const Args& a, size_t i, const char* name) {
  const int64_t v = a.integer(i, name);
  VL_CHECK(v >= 0 && v <= (int64_t{1} << 24), ErrorCode::Argument, a.fn, ": ", name,
           " must be an integer from 0 to 16777216, got ", v);
  return static_cast<int>(v);
}

// resampleImage(pixels: Uint8Array, width, height, channels, resizeWidth,
//   resizeHeight, left, top, cropWidth, cropHeight, mean: number[], std: number[])
//   -> Promise<Float32Array [channels, cropHeight, cropWidth]>
Napi::Value resample_image(const Napi::CallbackInfo& info) {
  Args a{info, "resampleImage"};
  Napi::Env env = info.Env();
  VL_CHECK(a.at(0).IsTypedArray() && a.at(0).As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array,
           ErrorCode::Argument, "resampleImage: pixels must be a Uint8Array (or Buffer) of interleaved 8-bit values");
  Napi::Uint8Array pixels = a.at(0).As<Napi::Uint8Array>();
  cpu::ResampleSpec s;
  s.src_w = size_arg(a, 1, "width");
  s.src_h = size_arg(a, 2, "height");
  s.channels = size_arg(a, 3, "channels");
  s.resize_w = size_arg(a, 4, "resizeWidth");
  s.resize_h = size_arg(a, 5, "resizeHeight");
  s.left = size_arg(a, 6, "left");
  s.top = size_arg(a, 7, "top");
  s.out_w = size_arg(a, 8, "cropWidth");
  s.out_h = size_arg(a, 9, "cropHeight");
  for (size_t arg = 10; arg <= 11; ++arg) {
    const char* name = arg == 10 ? "mean" : "std";
    VL_CHECK(s.channels <= 4 && a.at(arg).IsArray() &&
                 a.at(arg).As<Napi::Array>().Length() == static_cast<uint32_t>(s.channels),
             ErrorCode::Argument, "resampleImage: ", name, " must be an array of one number per channel (",
             s.channels, " channels; 1 to 4 are supported)");
    Napi::Array list = a.at(arg).As<Napi::Array>();
    for (int c = 0; c < s.channels; ++c) {
      Napi::Value v = list.Get(static_cast<uint32_t>(c));
      VL_CHECK(v.IsNumber(), ErrorCode::Argument, "resampleImage: ", name, "[", c, "] must be a number");
      (arg == 10 ? s.mean : s.std)[c] = v.As<Napi::Number>().FloatValue();
    }
  }
  cpu::check_resample_spec(s);  // a bad call throws here, not from the worker
  const size_t need = static_cast<size_t>(s.src_w) * s.src_h * s.channels;
  VL_CHECK(pixels.ElementLength() == need, ErrorCode::Argument, "resampleImage: a ", s.src_w, "x", s.src_h, "x",
           s.channels, " image has ", need, " bytes, got ", pixels.ElementLength());
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(s.channels) * s.out_w * s.out_h);
  auto* worker = new ResampleWorker(env, pixels, out, s);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace

void init_image(Napi::Object exports) {
  VL_EXPORT(exports, "resampleImage", resample_image);
  VL_EXPORT(exports, "decodeJpeg", decode_jpeg);
  VL_EXPORT(exports, "jpegDecoder", jpeg_decoder);
}

VL_BINDING_MODULE(init_image);

}  // namespace binding
}  // namespace vl
