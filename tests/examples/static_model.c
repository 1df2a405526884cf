/* static_model — runs a model compiled to an OBJECT file and linked into this program.
 *
 *   static_model WEIGHTS_DIR IN.bin OUT.bin
 *   static_model WEIGHTS_DIR IN0.bin IN1.bin ... OUT.bin     (one file per model input)
 *
 * The model's code is not loaded from a library: `tfjsc compile model.json -o model.o` writes
 * model.o and model.h, and this program is linked with model.o and libtfjsc_runtime.a. The
 * runtime only maps and checks the weight shards in WEIGHTS_DIR ("-": the directory recorded at
 * compile time). Each IN file holds the raw little-endian bytes of one input (float32 for the
 * fixture models), in the model's input order; OUT.bin receives output 0's raw bytes.
 *
 * Build (model.h beside model.o):
 *   tfjsc compile model.json -o build/model.o
 *   cc -I runtime/include -I build tests/examples/static_model.c build/model.o \
 *      target/debug/libtfjsc_runtime.a -lpthread -ldl -lm -o static_model */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h" /* tfjsc_model_description, tfjsc_model_run, TFJSC_MODEL_* */
#include "tfjsc_runtime.h"

/* Reads exactly `size` bytes of `path` into a new buffer; NULL (with a message) otherwise. */
static void *read_exactly(const char *path, size_t size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        fprintf(stderr, "static_model: cannot open %s\n", path);
        return NULL;
    }
    void *buffer = malloc(size ? size : 1);
    size_t read = buffer ? fread(buffer, 1, size, file) : 0;
    int extra = fgetc(file) != EOF;
    fclose(file);
    if (!buffer || read != size || extra) {
        fprintf(stderr, "static_model: %s must hold exactly %zu bytes\n", path, size);
        free(buffer);
        return NULL;
    }
    return buffer;
}

int main(int argc, char **argv) {
    char error[1024];
    /* The counts are known at compile time from the generated header. */
    const size_t input_count = TFJSC_MODEL_INPUT_COUNT;
    const size_t output_count = TFJSC_MODEL_OUTPUT_COUNT;
    if ((size_t)argc != 3 + input_count || output_count == 0) {
        fprintf(stderr,
                "usage: static_model WEIGHTS_DIR IN.bin%s OUT.bin (the linked model has %zu inputs "
                "and %zu outputs)\n",
                input_count > 1 ? " [IN1.bin ...]" : "", input_count, output_count);
        return 2;
    }
    const char *weights_dir = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
    tfjsc_model *model = tfjsc_model_open_static(tfjsc_model_description(), tfjsc_model_run,
                                                 weights_dir, error, sizeof error);
    if (!model) {
        fprintf(stderr, "static_model: %s\n", error);
        return 1;
    }
    if (tfjsc_model_input_count(model) != input_count ||
        tfjsc_model_output_count(model) != output_count) {
        fprintf(stderr, "static_model: the description disagrees with model.h\n");
        tfjsc_model_close(model);
        return 1;
    }

    const void *inputs[TFJSC_MODEL_INPUT_COUNT + 1] = {0};
    void *outputs[TFJSC_MODEL_OUTPUT_COUNT] = {0};
    int status = 0;
    for (size_t index = 0; status == 0 && index < input_count; index++) {
        inputs[index] = read_exactly(argv[2 + index], tfjsc_model_input_byte_size(model, index));
        if (!inputs[index]) status = 1;
    }
    for (size_t index = 0; status == 0 && index < output_count; index++) {
        size_t size = tfjsc_model_output_byte_size(model, index);
        outputs[index] = malloc(size ? size : 1);
        if (!outputs[index]) status = 1;
    }
    tfjsc_context *context = status == 0 ? tfjsc_context_new(model, error, sizeof error) : NULL;
    if (status == 0 && !context) {
        fprintf(stderr, "static_model: %s\n", error);
        status = 1;
    }
    if (status == 0 && tfjsc_context_run(context, inputs, outputs, error, sizeof error) != 0) {
        fprintf(stderr, "static_model: %s\n", error);
        status = 1;
    }
    if (status == 0) {
        const char *path = argv[argc - 1];
        size_t size = tfjsc_model_output_byte_size(model, 0);
        FILE *file = fopen(path, "wb");
        if (!file || fwrite(outputs[0], 1, size, file) != size) {
            fprintf(stderr, "static_model: cannot write %s\n", path);
            status = 1;
        }
        if (file && fclose(file) != 0) status = 1;
        if (status == 0)
            printf("%s: %zu bytes of output `%s`\n", path, size, tfjsc_model_output_name(model, 0));
    }
    tfjsc_context_free(context);
    for (size_t index = 0; index < input_count; index++) free((void *)inputs[index]);
    for (size_t index = 0; index < output_count; index++) free(outputs[index]);
    tfjsc_model_close(model);
    return status;
}
