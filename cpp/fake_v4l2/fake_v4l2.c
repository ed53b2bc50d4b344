// A V4L2 camera test double for the real rtinfer binary, loaded with LD_PRELOAD.
//
// No camera exists on the build machines and the container cannot load `vivid`, so this double
// sits behind the very boundary the daemon uses on a board: the C library calls the `v4l` crate
// makes (open, the ioctl syscall, mmap, poll, close). It answers them for one fake device node
// the way a UVC webcam's driver does, and passes every other call through untouched.
//
// Environment:
//   FAKE_V4L2_DEVICE  the node it answers for (e.g. /dev/video42; nothing else is touched)
//   FAKE_V4L2_STATE   a file: "unplugged" makes the camera disappear (DQBUF and poll report ENODEV
//                     / POLLERR, open fails with ENOENT), anything else (or no file) plugs it in
//   FAKE_V4L2_FPS     the rate it streams at when the client asks for none (default 30)
//
// The camera offers YUYV only (the most common UVC format), any even size up to 1280x720 (it
// rounds the request down, as drivers do), 1..120 FPS, MMAP streaming with up to 8 buffers, and
// stamps buffers with CLOCK_MONOTONIC (V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC). Frame n is a
// horizontal luma ramp shifted by n pixels with neutral chroma.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUFFERS 8
#define OFFSET_STEP 0x1000000L  // QUERYBUF's m.offset for buffer i is i * OFFSET_STEP

struct buffer {
  void* mem;
  size_t len;
  int queued;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fake_fd = -1;
static uint32_t width = 640, height = 480;
static double fps = 0;
static struct buffer bufs[MAX_BUFFERS];
static uint32_t nbufs = 0;
static int streaming = 0;
static uint64_t next_due_ns = 0;
static uint32_t sequence = 0;

typedef int (*open_fn)(const char*, int, ...);
typedef int (*close_fn)(int);
typedef long (*syscall_fn)(long, ...);
typedef void* (*mmap_fn)(void*, size_t, int, int, int, off_t);
typedef int (*poll_fn)(struct pollfd*, nfds_t, int);

static void* next_symbol(const char* name) { return dlsym(RTLD_NEXT, name); }

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int is_device(const char* path) {
  const char* dev = getenv("FAKE_V4L2_DEVICE");
  return dev != NULL && path != NULL && strcmp(path, dev) == 0;
}

static int unplugged(void) {
  const char* state = getenv("FAKE_V4L2_STATE");
  if (state == NULL) return 0;
  char text[32] = {0};
  FILE* f = fopen(state, "r");
  if (f == NULL) return 0;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  return strncmp(text, "unplugged", 9) == 0;
}

static double default_fps(void) {
  const char* s = getenv("FAKE_V4L2_FPS");
  double f = s ? atof(s) : 30.0;
  return f > 0 ? f : 30.0;
}

static uint32_t frame_bytes(void) { return width * height * 2; }

static void free_buffers(void) {
  for (uint32_t i = 0; i < nbufs; i++) {
    if (bufs[i].mem) munmap(bufs[i].mem, bufs[i].len);
    bufs[i].mem = NULL;
    bufs[i].queued = 0;
  }
  nbufs = 0;
}

static void fill_format(struct v4l2_pix_format* p) {
  p->width = width;
  p->height = height;
  p->pixelformat = V4L2_PIX_FMT_YUYV;
  p->field = V4L2_FIELD_NONE;
  p->bytesperline = width * 2;
  p->sizeimage = frame_bytes();
  p->colorspace = V4L2_COLORSPACE_SRGB;
}

static void fill_parm(struct v4l2_streamparm* s) {
  s->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
  s->parm.capture.timeperframe.numerator = 1000;
  s->parm.capture.timeperframe.denominator = (uint32_t)(fps * 1000.0 + 0.5);
  s->parm.capture.readbuffers = 0;
}

static void draw(uint8_t* p, uint32_t n) {
  for (uint32_t y = 0; y < height; y++) {
    uint8_t* row = p + (size_t)y * width * 2;
    for (uint32_t x = 0; x < width; x += 2) {
      row[x * 2 + 0] = (uint8_t)(16 + ((x + n) * 219 / width) % 220);      // Y0
      row[x * 2 + 1] = 128;                                               // U
      row[x * 2 + 2] = (uint8_t)(16 + ((x + 1 + n) * 219 / width) % 220);  // Y1
      row[x * 2 + 3] = 128;                                               // V
    }
  }
}

// Sleeps until the next frame is due or `timeout_ms` passes (-1 = forever). Whether it is due.
static int wait_due(int timeout_ms) {
  uint64_t now = now_ns();
  if (next_due_ns <= now) return 1;
  uint64_t wait = next_due_ns - now;
  if (timeout_ms >= 0 && wait > (uint64_t)timeout_ms * 1000000ull) {
    struct timespec t = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    return 0;
  }
  struct timespec t = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};
  nanosleep(&t, NULL);
  return 1;
}

static int fail(int err) {
  errno = err;
  return -1;
}

static int handle_ioctl(unsigned long request, void* arg) {
  if (unplugged() && request != VIDIOC_STREAMOFF && request != VIDIOC_REQBUFS) return fail(ENODEV);
  switch (request) {
    case VIDIOC_QUERYCAP: {
      struct v4l2_capability* c = arg;
      memset(c, 0, sizeof *c);
      strcpy((char*)c->driver, "fake_v4l2");
      strcpy((char*)c->card, "rtinfer test camera");
      c->capabilities = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING | V4L2_CAP_DEVICE_CAPS;
      c->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
      return 0;
    }
    case VIDIOC_ENUM_FMT: {
      struct v4l2_fmtdesc* d = arg;
      if (d->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || d->index != 0) return fail(EINVAL);
      d->pixelformat = V4L2_PIX_FMT_YUYV;
      d->flags = 0;
      strcpy((char*)d->description, "YUYV 4:2:2");
      return 0;
    }
    case VIDIOC_G_FMT: {
      struct v4l2_format* f = arg;
      if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
      fill_format(&f->fmt.pix);
      return 0;
    }
    case VIDIOC_S_FMT: {
      struct v4l2_format* f = arg;
      if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
      if (streaming || nbufs > 0) return fail(EBUSY);
      uint32_t w = f->fmt.pix.width, h = f->fmt.pix.height;
      width = w < 2 ? 2 : (w > 1280 ? 1280 : w & ~1u);
      height = h < 2 ? 2 : (h > 720 ? 720 : h & ~1u);
      fill_format(&f->fmt.pix);  // any other pixel format becomes YUYV, as drivers do
      return 0;
    }
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM: {
      struct v4l2_streamparm* s = arg;
      if (s->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
      if (request == VIDIOC_S_PARM) {
        struct v4l2_fract t = s->parm.capture.timeperframe;
        if (t.numerator > 0 && t.denominator > 0) {
          double want = (double)t.denominator / (double)t.numerator;
          fps = want < 1 ? 1 : (want > 120 ? 120 : want);
        }
      }
      fill_parm(s);
      return 0;
    }
    case VIDIOC_REQBUFS: {
      struct v4l2_requestbuffers* r = arg;
      if (r->memory != V4L2_MEMORY_MMAP) return fail(EINVAL);
      if (streaming && r->count > 0) return fail(EBUSY);
      free_buffers();
      uint32_t n = r->count > MAX_BUFFERS ? MAX_BUFFERS : r->count;
      for (uint32_t i = 0; i < n; i++) {
        bufs[i].len = frame_bytes();
        bufs[i].mem = mmap(NULL, bufs[i].len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (bufs[i].mem == MAP_FAILED) {
          bufs[i].mem = NULL;
          free_buffers();
          return fail(ENOMEM);
        }
      }
      nbufs = n;
      r->count = n;
      return 0;
    }
    case VIDIOC_QUERYBUF:
    case VIDIOC_QBUF: {
      struct v4l2_buffer* b = arg;
      if (b->index >= nbufs || b->memory != V4L2_MEMORY_MMAP) return fail(EINVAL);
      if (request == VIDIOC_QBUF) bufs[b->index].queued = 1;
      b->length = (uint32_t)bufs[b->index].len;
      b->m.offset = (uint32_t)(b->index * OFFSET_STEP);
      b->flags = V4L2_BUF_FLAG_MAPPED | (bufs[b->index].queued ? V4L2_BUF_FLAG_QUEUED : 0);
      return 0;
    }
    case VIDIOC_STREAMON:
      if (nbufs == 0) return fail(EINVAL);
      streaming = 1;
      next_due_ns = now_ns();
      return 0;
    case VIDIOC_STREAMOFF:
      streaming = 0;
      for (uint32_t i = 0; i < nbufs; i++) bufs[i].queued = 0;
      return 0;
    case VIDIOC_DQBUF: {
      struct v4l2_buffer* b = arg;
      if (!streaming) return fail(EINVAL);
      int index = -1;
      for (uint32_t i = 0; i < nbufs; i++)
        if (bufs[i].queued) {
          index = (int)i;
          break;
        }
      if (index < 0) return fail(EINVAL);
      if (next_due_ns > now_ns()) return fail(EAGAIN);  // the node is opened O_NONBLOCK
      draw(bufs[index].mem, sequence);
      bufs[index].queued = 0;
      uint64_t at = now_ns();
      b->index = (uint32_t)index;
      b->bytesused = frame_bytes();
      b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_DONE | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
      b->field = V4L2_FIELD_NONE;
      b->timestamp.tv_sec = (time_t)(at / 1000000000ull);
      b->timestamp.tv_usec = (suseconds_t)((at % 1000000000ull) / 1000ull);
      b->sequence = sequence++;
      next_due_ns += (uint64_t)(1e9 / fps);
      if (next_due_ns + 4ull * (uint64_t)(1e9 / fps) < at) next_due_ns = at;  // fell behind
      return 0;
    }
    default:
      return fail(ENOTTY);
  }
}

// Opens the fake node (or fails as the camera's state says); every other path goes to the real
// `which` ("open" or "open64").
static int open_as(open_fn* real, const char* which, const char* path, int flags, mode_t mode) {
  if (!*real) *real = (open_fn)next_symbol(which);
  if (!is_device(path)) return (*real)(path, flags, mode);
  pthread_mutex_lock(&lock);
  int fd;
  if (unplugged()) {
    fd = fail(ENOENT);
  } else if (fake_fd >= 0) {
    fd = fail(EBUSY);
  } else {
    fd = (*real)("/dev/null", O_RDWR | O_CLOEXEC, 0);
    if (fd >= 0) {
      fake_fd = fd;
      width = 640;
      height = 480;
      fps = default_fps();
      streaming = 0;
      sequence = 0;
      free_buffers();
    }
  }
  pthread_mutex_unlock(&lock);
  return fd;
}

// open(2)'s optional third argument.
#define MODE_ARGUMENT(flags, mode)           \
  do {                                       \
    if ((flags) & (O_CREAT | O_TMPFILE)) {   \
      va_list ap;                            \
      va_start(ap, flags);                   \
      (mode) = va_arg(ap, mode_t);           \
      va_end(ap);                            \
    }                                        \
  } while (0)

int open(const char* path, int flags, ...) {
  static open_fn real;
  mode_t mode = 0;
  MODE_ARGUMENT(flags, mode);
  return open_as(&real, "open", path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  static open_fn real;
  mode_t mode = 0;
  MODE_ARGUMENT(flags, mode);
  return open_as(&real, "open64", path, flags, mode);
}

int close(int fd) {
  static close_fn real;
  if (!real) real = (close_fn)next_symbol("close");
  pthread_mutex_lock(&lock);
  if (fd >= 0 && fd == fake_fd) {
    fake_fd = -1;
    streaming = 0;
    free_buffers();
  }
  pthread_mutex_unlock(&lock);
  return real(fd);
}

long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_ioctl && (int)a[0] >= 0 && (int)a[0] == fake_fd) {
    pthread_mutex_lock(&lock);
    int rc = handle_ioctl((unsigned long)a[1], (void*)a[2]);
    int err = errno;
    pthread_mutex_unlock(&lock);
    errno = err;
    return rc;
  }
  static syscall_fn real;
  if (!real) real = (syscall_fn)next_symbol("syscall");
  return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static void* map_buffer(int fd, off_t offset, size_t length, int* handled) {
  *handled = 0;
  if (fd < 0 || fd != fake_fd) return NULL;
  *handled = 1;
  pthread_mutex_lock(&lock);
  long index = offset / OFFSET_STEP;
  void* mem = MAP_FAILED;
  if (offset % OFFSET_STEP == 0 && index >= 0 && (uint32_t)index < nbufs && length <= bufs[index].len) {
    // A second mapping of the same anonymous shared pages: the client sees what `draw` writes.
    mem = mremap(bufs[index].mem, 0, length, MREMAP_MAYMOVE);
  }
  pthread_mutex_unlock(&lock);
  if (mem == MAP_FAILED) errno = EINVAL;
  return mem;
}

static void* mmap_as(mmap_fn* real, const char* which, void* addr, size_t length, int prot, int flags,
                     int fd, off_t offset) {
  int handled;
  void* mem = map_buffer(fd, offset, length, &handled);
  if (handled) return mem;
  if (!*real) *real = (mmap_fn)next_symbol(which);
  return (*real)(addr, length, prot, flags, fd, offset);
}

void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  static mmap_fn real;
  return mmap_as(&real, "mmap", addr, length, prot, flags, fd, offset);
}

void* mmap64(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  static mmap_fn real;
  return mmap_as(&real, "mmap64", addr, length, prot, flags, fd, offset);
}

int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  static poll_fn real;
  if (!real) real = (poll_fn)next_symbol("poll");
  if (nfds != 1 || fds[0].fd < 0 || fds[0].fd != fake_fd) return real(fds, nfds, timeout);
  fds[0].revents = 0;
  if (unplugged()) {
    fds[0].revents = POLLERR;
    return 1;
  }
  pthread_mutex_lock(&lock);
  int live = streaming;
  pthread_mutex_unlock(&lock);
  if (!live) {
    fds[0].revents = POLLERR;
    return 1;
  }
  if (!wait_due(timeout)) return 0;
  fds[0].revents = fds[0].events & (POLLIN | POLLRDNORM);
  return fds[0].revents ? 1 : 0;
}
