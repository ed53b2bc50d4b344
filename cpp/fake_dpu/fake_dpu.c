/*
 * fake_dpu.c: a test double of librtinfer_vart.so implementing ffi/vart_shim.h without a DPU.
 *
 * rtinfer's tests load it through the same libloading path as the real shim, so everything on
 * the Rust side of the boundary is exercised; only VART itself is replaced. It behaves like the
 * ZCU104's runner where that matters to the daemon: execute_async does the whole job (blocking
 * for the configured latency) and wait returns at once, ignoring its timeout.
 *
 * The "model" is a small text file (any extension; tests call it *.xmodel):
 *
 *   fake-dpu 1                          first line, always
 *   input NAME DTYPE D0 D1 ... [fix N]  one per input tensor (DTYPE: int8, uint8, float32)
 *   output NAME DTYPE D0 D1 ... [fix N] one per output tensor
 *   op affine MUL ADD                   out[i] = clamp(in0[i % len(in0)] * MUL + ADD, -128, 127)
 *   latency_ms MS                       execute_async blocks this long (default 0)
 *   latency_scale_file PATH             ... times the number in PATH, read at every job (a test
 *                                       changes the DPU's speed while the daemon runs; a missing or
 *                                       unreadable file means 1)
 *   fail_run_after N                    runs after the N-th fail with RTV_ERR_RUN (default never)
 *   reject REASON...                    rtv_open refuses the model with REASON
 *   # comment
 *
 * Build flags for failure modes of the library itself: -DFAKE_DPU_WITHOUT_RUN leaves rtv_run
 * out (a library missing a symbol); -DFAKE_DPU_ABI=N reports another ABI version.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../ffi/vart_shim.h"

#ifndef FAKE_DPU_ABI
#define FAKE_DPU_ABI RTV_ABI_VERSION
#endif

#define FAKE_MAX_TENSORS 4
#define FAKE_LINE 512

struct fake_tensor {
  rtv_tensor_info info;
  int8_t *buffer; /* batch_bytes, allocated at open (the runner's "tensor buffer") */
};

struct rtv_model {
  struct fake_tensor inputs[FAKE_MAX_TENSORS];
  struct fake_tensor outputs[FAKE_MAX_TENSORS];
  int32_t n_inputs;
  int32_t n_outputs;
  int32_t mul;
  int32_t add;
  int64_t latency_ms;
  char latency_scale_file[FAKE_LINE];
  int64_t fail_run_after; /* 0: never */
  int64_t runs;
};

/* A job as the real runner keeps it between execute_async and wait. */
struct fake_job {
  int32_t status;
};

static _Thread_local char last_error[FAKE_LINE];

static int32_t fail(int32_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

int32_t rtv_abi_version(void) { return FAKE_DPU_ABI; }

const char *rtv_version(void) { return "fake DPU (rtinfer test double)"; }

const char *rtv_last_error(void) { return last_error; }

static int parse_dtype(const char *s) {
  if (strcmp(s, "int8") == 0) return RTV_DTYPE_INT8;
  if (strcmp(s, "uint8") == 0) return RTV_DTYPE_UINT8;
  if (strcmp(s, "float32") == 0) return RTV_DTYPE_FLOAT32;
  return -1;
}

static int element_bytes(int dtype) { return dtype == RTV_DTYPE_FLOAT32 ? 4 : 1; }

static int parse_i64(const char *s, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') return -1;
  *out = (int64_t)v;
  return 0;
}

/* "NAME DTYPE D0 D1 ... [fix N]" after the input/output keyword. */
static int32_t parse_tensor(char *rest, const char *path, int line, struct fake_tensor *t) {
  char *save = NULL;
  char *name = strtok_r(rest, " \t", &save);
  char *dtype = strtok_r(NULL, " \t", &save);
  if (name == NULL || dtype == NULL)
    return fail(RTV_ERR_OPEN, "%s:%d: expected NAME DTYPE DIMS...", path, line);
  memset(&t->info, 0, sizeof t->info);
  snprintf(t->info.name, sizeof t->info.name, "%s", name);
  t->info.dtype = parse_dtype(dtype);
  if (t->info.dtype < 0)
    return fail(RTV_ERR_OPEN, "%s:%d: unknown dtype '%s'", path, line, dtype);
  int64_t elements = 1;
  char *tok;
  while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
    int64_t v;
    if (strcmp(tok, "fix") == 0) {
      char *n = strtok_r(NULL, " \t", &save);
      if (n == NULL || parse_i64(n, &v) != 0 || v < -64 || v > 64)
        return fail(RTV_ERR_OPEN, "%s:%d: fix needs an integer in [-64, 64]", path, line);
      t->info.fix_point = (int32_t)v;
      t->info.has_fix_point = 1;
      continue;
    }
    if (parse_i64(tok, &v) != 0 || v <= 0 || v > 65536)
      return fail(RTV_ERR_OPEN, "%s:%d: bad dimension '%s'", path, line, tok);
    if (t->info.ndims == RTV_MAX_DIMS)
      return fail(RTV_ERR_OPEN, "%s:%d: more than %d dimensions", path, line, RTV_MAX_DIMS);
    t->info.dims[t->info.ndims++] = (int32_t)v;
    elements *= v;
  }
  if (t->info.ndims == 0) return fail(RTV_ERR_OPEN, "%s:%d: no dimensions", path, line);
  /* One batch element, as the real shim reports it. */
  t->info.batch_bytes = elements / t->info.dims[0] * element_bytes(t->info.dtype);
  t->buffer = calloc((size_t)t->info.batch_bytes, 1);
  if (t->buffer == NULL) return fail(RTV_ERR_INTERNAL, "%s:%d: out of memory", path, line);
  return RTV_OK;
}

static int32_t parse_line(struct rtv_model *m, char *text, const char *path, int line) {
  char *save = NULL;
  char *key = strtok_r(text, " \t", &save);
  if (key == NULL || key[0] == '#') return RTV_OK;
  char *rest = save != NULL ? save : "";
  while (*rest == ' ' || *rest == '\t') rest++;
  if (strcmp(key, "input") == 0 || strcmp(key, "output") == 0) {
    int is_in = key[0] == 'i';
    int32_t *n = is_in ? &m->n_inputs : &m->n_outputs;
    if (*n == FAKE_MAX_TENSORS)
      return fail(RTV_ERR_OPEN, "%s:%d: more than %d %ss", path, line, FAKE_MAX_TENSORS, key);
    int32_t st = parse_tensor(rest, path, line, is_in ? &m->inputs[*n] : &m->outputs[*n]);
    if (st == RTV_OK) *n += 1;
    return st;
  }
  if (strcmp(key, "reject") == 0)
    return fail(RTV_ERR_MODEL, "%s: the DPU cannot run this model: %s", path, rest);
  if (strcmp(key, "latency_scale_file") == 0) {
    if (*rest == '\0')
      return fail(RTV_ERR_OPEN, "%s:%d: latency_scale_file needs a path", path, line);
    snprintf(m->latency_scale_file, sizeof m->latency_scale_file, "%s", rest);
    return RTV_OK;
  }
  int64_t a, b;
  char *s1 = strtok_r(NULL, " \t", &save);
  char *s2 = strtok_r(NULL, " \t", &save);
  if (strcmp(key, "op") == 0) {
    char *s3 = strtok_r(NULL, " \t", &save);
    if (s1 == NULL || strcmp(s1, "affine") != 0 || s2 == NULL || s3 == NULL ||
        parse_i64(s2, &a) != 0 || parse_i64(s3, &b) != 0 || a < -1000 || a > 1000 ||
        b < -100000 || b > 100000)
      return fail(RTV_ERR_OPEN, "%s:%d: expected 'op affine MUL ADD'", path, line);
    m->mul = (int32_t)a;
    m->add = (int32_t)b;
    return RTV_OK;
  }
  if (s1 == NULL || parse_i64(s1, &a) != 0 || a < 0)
    return fail(RTV_ERR_OPEN, "%s:%d: %s needs a non-negative integer", path, line, key);
  if (strcmp(key, "latency_ms") == 0) {
    m->latency_ms = a;
  } else if (strcmp(key, "fail_run_after") == 0) {
    m->fail_run_after = a;
  } else {
    return fail(RTV_ERR_OPEN, "%s:%d: unknown key '%s'", path, line, key);
  }
  return RTV_OK;
}

static int32_t parse_file(struct rtv_model *m, FILE *f, const char *path) {
  char text[FAKE_LINE];
  int line = 0;
  while (fgets(text, sizeof text, f) != NULL) {
    line++;
    text[strcspn(text, "\r\n")] = '\0';
    if (line == 1) {
      if (strcmp(text, "fake-dpu 1") != 0)
        return fail(RTV_ERR_OPEN, "%s: not a fake DPU model (first line must be 'fake-dpu 1')",
                    path);
      continue;
    }
    int32_t st = parse_line(m, text, path, line);
    if (st != RTV_OK) return st;
  }
  if (line == 0) return fail(RTV_ERR_OPEN, "%s: empty file", path);
  if (m->n_inputs == 0 || m->n_outputs == 0)
    return fail(RTV_ERR_MODEL, "%s: the DPU subgraph needs at least one input and one output",
                path);
  return RTV_OK;
}

void rtv_close(rtv_model *model) {
  if (model == NULL) return;
  for (int i = 0; i < FAKE_MAX_TENSORS; i++) {
    free(model->inputs[i].buffer);
    free(model->outputs[i].buffer);
  }
  free(model);
}

int32_t rtv_open(const char *xmodel_path, rtv_model **out) {
  last_error[0] = '\0';
  if (xmodel_path == NULL || out == NULL) return fail(RTV_ERR_ARGUMENT, "rtv_open: null argument");
  *out = NULL;
  FILE *f = fopen(xmodel_path, "r");
  if (f == NULL) return fail(RTV_ERR_OPEN, "%s: %s", xmodel_path, strerror(errno));
  struct rtv_model *m = calloc(1, sizeof *m);
  if (m == NULL) {
    fclose(f);
    return fail(RTV_ERR_INTERNAL, "%s: out of memory", xmodel_path);
  }
  m->mul = 1;
  int32_t st = parse_file(m, f, xmodel_path);
  fclose(f);
  if (st != RTV_OK) {
    rtv_close(m);
    return st;
  }
  *out = m;
  return RTV_OK;
}

int32_t rtv_tensor_count(const rtv_model *model, int32_t direction, int32_t *out) {
  if (model == NULL || out == NULL) return fail(RTV_ERR_ARGUMENT, "rtv_tensor_count: null argument");
  if (direction != RTV_INPUT && direction != RTV_OUTPUT)
    return fail(RTV_ERR_ARGUMENT, "rtv_tensor_count: bad direction %d", direction);
  *out = direction == RTV_INPUT ? model->n_inputs : model->n_outputs;
  return RTV_OK;
}

int32_t rtv_describe_tensor(const rtv_model *model, int32_t direction, int32_t index,
                            rtv_tensor_info *out) {
  if (model == NULL || out == NULL)
    return fail(RTV_ERR_ARGUMENT, "rtv_describe_tensor: null argument");
  int32_t n = direction == RTV_INPUT ? model->n_inputs : model->n_outputs;
  if ((direction != RTV_INPUT && direction != RTV_OUTPUT) || index < 0 || index >= n)
    return fail(RTV_ERR_ARGUMENT, "rtv_describe_tensor: no tensor %d in direction %d", index,
                direction);
  *out = direction == RTV_INPUT ? model->inputs[index].info : model->outputs[index].info;
  return RTV_OK;
}

#ifndef FAKE_DPU_WITHOUT_RUN
static void sleep_us(int64_t us) {
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The factor in the model's latency_scale_file, 1 when there is none or it cannot be read. */
static double latency_scale(const struct rtv_model *m) {
  if (m->latency_scale_file[0] == '\0') return 1.0;
  FILE *f = fopen(m->latency_scale_file, "r");
  if (f == NULL) return 1.0;
  double v = 1.0;
  if (fscanf(f, "%lf", &v) != 1 || !(v >= 0.0 && v <= 1000.0)) v = 1.0;
  fclose(f);
  return v;
}

static int8_t saturate(int64_t v) { return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v); }

/* Like the ZCU104's runner: the whole job happens here, synchronously. */
static struct fake_job fake_execute_async(struct rtv_model *m) {
  struct fake_job job = {RTV_OK};
  m->runs++;
  sleep_us((int64_t)((double)m->latency_ms * 1000.0 * latency_scale(m)));
  if (m->fail_run_after != 0 && m->runs > m->fail_run_after) {
    job.status = fail(RTV_ERR_RUN, "fake DPU: job %lld failed (fail_run_after %lld)",
                      (long long)m->runs, (long long)m->fail_run_after);
    return job;
  }
  const struct fake_tensor *in = &m->inputs[0];
  for (int32_t o = 0; o < m->n_outputs; o++) {
    struct fake_tensor *t = &m->outputs[o];
    for (int64_t i = 0; i < t->info.batch_bytes; i++) {
      int64_t x = in->buffer[i % in->info.batch_bytes];
      t->buffer[i] = saturate(x * m->mul + m->add);
    }
  }
  return job;
}

/* Returns at once: the job is already done, whatever the timeout. */
static int32_t fake_wait(const struct fake_job *job, int32_t timeout_ms) {
  (void)timeout_ms;
  return job->status;
}

int32_t rtv_run(rtv_model *model, const int8_t *const *inputs, const int64_t *input_bytes,
                int32_t input_count, int8_t *const *outputs, const int64_t *output_bytes,
                int32_t output_count, int32_t timeout_ms) {
  if (model == NULL || inputs == NULL || input_bytes == NULL || outputs == NULL ||
      output_bytes == NULL)
    return fail(RTV_ERR_ARGUMENT, "rtv_run: null argument");
  if (input_count != model->n_inputs || output_count != model->n_outputs)
    return fail(RTV_ERR_ARGUMENT, "rtv_run: %d inputs and %d outputs given, model has %d and %d",
                input_count, output_count, model->n_inputs, model->n_outputs);
  for (int32_t i = 0; i < input_count; i++) {
    if (inputs[i] == NULL || input_bytes[i] != model->inputs[i].info.batch_bytes)
      return fail(RTV_ERR_ARGUMENT, "rtv_run: input %d: %lld bytes given, tensor has %lld", i,
                  (long long)input_bytes[i], (long long)model->inputs[i].info.batch_bytes);
  }
  for (int32_t i = 0; i < output_count; i++) {
    if (outputs[i] == NULL || output_bytes[i] != model->outputs[i].info.batch_bytes)
      return fail(RTV_ERR_ARGUMENT, "rtv_run: output %d: %lld bytes given, tensor has %lld", i,
                  (long long)output_bytes[i], (long long)model->outputs[i].info.batch_bytes);
  }
  for (int32_t i = 0; i < input_count; i++)
    memcpy(model->inputs[i].buffer, inputs[i], (size_t)input_bytes[i]);
  struct fake_job job = fake_execute_async(model);
  int32_t st = fake_wait(&job, timeout_ms);
  if (st != RTV_OK) return st;
  for (int32_t i = 0; i < output_count; i++)
    memcpy(outputs[i], model->outputs[i].buffer, (size_t)output_bytes[i]);
  return RTV_OK;
}
#endif
