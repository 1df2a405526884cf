/* Exercises tfjsc_runtime.h against the fake model: opened as a shared library (argv[1], shards
 * in argv[2]) and linked statically (symbols linked_model_description / linked_model_run).
 * Prints metadata and outputs; the Rust test driving it checks the text. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tfjsc_runtime.h"

const char *linked_model_description(void);
struct tfjsc_threads;
int32_t linked_model_run(const void *const *weights, const void *const *inputs,
                         void *const *outputs, void *arena, const struct tfjsc_threads *threads);

static int run_once(const char *label, tfjsc_model *model) {
    char error[512];
    for (size_t index = 0; index < tfjsc_model_input_count(model); index++) {
        printf("%s input %zu %s dtype=%d rank=%zu dims=", label, index,
               tfjsc_model_input_name(model, index), tfjsc_model_input_dtype(model, index),
               tfjsc_model_input_rank(model, index));
        const size_t *dims = tfjsc_model_input_dims(model, index);
        for (size_t axis = 0; axis < tfjsc_model_input_rank(model, index); axis++)
            printf("%s%zu", axis ? "," : "", dims[axis]);
        printf(" bytes=%zu\n", tfjsc_model_input_byte_size(model, index));
    }
    for (size_t index = 0; index < tfjsc_model_output_count(model); index++)
        printf("%s output %zu %s dtype=%d rank=%zu bytes=%zu\n", label, index,
               tfjsc_model_output_name(model, index), tfjsc_model_output_dtype(model, index),
               tfjsc_model_output_rank(model, index), tfjsc_model_output_byte_size(model, index));

    tfjsc_context *context = tfjsc_context_new(model, error, sizeof error);
    if (!context) {
        printf("%s context error: %s\n", label, error);
        return 1;
    }
    float x[6] = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, -1.5f};
    int32_t k[3] = {5, -6, 100};
    float y[6];
    int32_t z[3];
    const void *inputs[2] = {x, k};
    void *outputs[2] = {y, z};
    if (tfjsc_context_run(context, inputs, outputs, error, sizeof error) != 0) {
        printf("%s run error: %s\n", label, error);
        tfjsc_context_free(context);
        return 1;
    }
    printf("%s y", label);
    for (int index = 0; index < 6; index++) printf(" %g", y[index]);
    printf("\n%s z", label);
    for (int index = 0; index < 3; index++) printf(" %d", z[index]);
    printf("\n");

    x[0] = NAN;
    int32_t status = tfjsc_context_run(context, inputs, outputs, error, sizeof error);
    printf("%s failing run: status=%d error=%s\n", label, status, error);
    const void *null_inputs[2] = {x, NULL};
    status = tfjsc_context_run(context, null_inputs, outputs, error, sizeof error);
    printf("%s null input: status=%d error=%s\n", label, status, error);
    tfjsc_context_free(context);
    return 0;
}

int main(int argc, char **argv) {
    char error[512];
    if (argc != 3) {
        fprintf(stderr, "usage: capi_test LIBRARY WEIGHTS_DIR\n");
        return 2;
    }
    tfjsc_model *model = tfjsc_model_open(argv[1], argv[2], error, sizeof error);
    if (!model) {
        printf("open error: %s\n", error);
        return 1;
    }
    if (run_once("shared", model)) return 1;
    tfjsc_model_close(model);

    model = tfjsc_model_open_static(linked_model_description(), linked_model_run, argv[2], error,
                                    sizeof error);
    if (!model) {
        printf("static open error: %s\n", error);
        return 1;
    }
    if (run_once("static", model)) return 1;
    tfjsc_model_close(model);

    model = tfjsc_model_open("/nonexistent/libmodel.so", NULL, error, sizeof error);
    printf("missing library: %s %s\n", model ? "opened" : "NULL", error);
    model = tfjsc_model_open_with_prefix(argv[1], "nope", argv[2], error, sizeof error);
    printf("wrong prefix: %s %s\n", model ? "opened" : "NULL", error);
    char tiny[8];
    model = tfjsc_model_open(argv[1], "/nonexistent", tiny, sizeof tiny);
    printf("truncated error: %s [%s]\n", model ? "opened" : "NULL", tiny);
    return 0;
}
