/* run_model — runs a tfjsc-compiled model once from the command line, through tfjsc_runtime.h.
 *
 *   run_model [--threads N] LIBRARY WEIGHTS_DIR IN0.bin [IN1.bin ...] OUT.bin
 *
 * Each IN file holds the raw little-endian bytes of one input, in the model's input order (as
 * many files as the model has inputs). OUT.bin receives output 0's raw bytes. WEIGHTS_DIR "-"
 * uses the directory recorded at compile time. --threads N runs on N threads (the same bytes).
 *
 * Build: cc -I runtime/include run_model.c target/debug/libtfjsc_runtime.a -lpthread -ldl -lm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfjsc_runtime.h"

/* Reads exactly `size` bytes of `path` into a new buffer; NULL (with a message) otherwise. */
static void *read_exactly(const char *path, size_t size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        fprintf(stderr, "run_model: cannot open %s\n", path);
        return NULL;
    }
    void *buffer = malloc(size ? size : 1);
    size_t read = buffer ? fread(buffer, 1, size, file) : 0;
    int extra = fgetc(file) != EOF;
    fclose(file);
    if (!buffer || read != size || extra) {
        fprintf(stderr, "run_model: %s must hold exactly %zu bytes\n", path, size);
        free(buffer);
        return NULL;
    }
    return buffer;
}

int main(int argc, char **argv) {
    char error[1024];
    size_t threads = 1;
    if (argc > 2 && strcmp(argv[1], "--threads") == 0) {
        char *end = NULL;
        threads = strtoul(argv[2], &end, 10);
        if (!end || *end != '\0') {
            fprintf(stderr, "run_model: --threads takes a count, not %s\n", argv[2]);
            return 2;
        }
        argc -= 2;
        argv += 2;
    }
    if (argc < 5) {
        fprintf(stderr,
                "usage: run_model [--threads N] LIBRARY WEIGHTS_DIR IN0.bin [IN1.bin ...] OUT.bin\n");
        return 2;
    }
    const char *weights_dir = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
    tfjsc_model *model = tfjsc_model_open(argv[1], weights_dir, error, sizeof error);
    if (!model) {
        fprintf(stderr, "run_model: %s\n", error);
        return 1;
    }
    size_t input_count = tfjsc_model_input_count(model);
    size_t output_count = tfjsc_model_output_count(model);
    if ((size_t)argc != 4 + input_count || output_count == 0) {
        fprintf(stderr, "run_model: the model has %zu inputs and %zu outputs; give one file per input\n",
                input_count, output_count);
        tfjsc_model_close(model);
        return 2;
    }
    const void **inputs = calloc(input_count + 1, sizeof *inputs);
    void **outputs = calloc(output_count, sizeof *outputs);
    int status = inputs && outputs ? 0 : 1;
    for (size_t index = 0; status == 0 && index < input_count; index++) {
        inputs[index] = read_exactly(argv[3 + index], tfjsc_model_input_byte_size(model, index));
        if (!inputs[index]) status = 1;
    }
    for (size_t index = 0; status == 0 && index < output_count; index++) {
        size_t size = tfjsc_model_output_byte_size(model, index);
        outputs[index] = malloc(size ? size : 1);
        if (!outputs[index]) status = 1;
    }
    tfjsc_context *context = status == 0 ? tfjsc_context_new(model, error, sizeof error) : NULL;
    if (status == 0 && !context) {
        fprintf(stderr, "run_model: %s\n", error);
        status = 1;
    }
    if (status == 0 && tfjsc_context_set_threads(context, threads, error, sizeof error) != 0) {
        fprintf(stderr, "run_model: %s\n", error);
        status = 1;
    }
    if (status == 0 && tfjsc_context_run(context, inputs, outputs, error, sizeof error) != 0) {
        fprintf(stderr, "run_model: %s\n", error);
        status = 1;
    }
    if (status == 0) {
        const char *path = argv[argc - 1];
        size_t size = tfjsc_model_output_byte_size(model, 0);
        FILE *file = fopen(path, "wb");
        if (!file || fwrite(outputs[0], 1, size, file) != size) {
            fprintf(stderr, "run_model: cannot write %s\n", path);
            status = 1;
        }
        if (file && fclose(file) != 0) status = 1;
        if (status == 0)
            printf("%s: %zu bytes of output `%s`\n", path, size, tfjsc_model_output_name(model, 0));
    }
    tfjsc_context_free(context);
    for (size_t index = 0; inputs && index < input_count; index++) free((void *)inputs[index]);
    for (size_t index = 0; outputs && index < output_count; index++) free(outputs[index]);
    free(inputs);
    free(outputs);
    tfjsc_model_close(model);
    return status;
}
