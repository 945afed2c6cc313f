/* @prefix@_host.c: the framer's model step on another interpreter's own tensor buffers, for
 * running this framer on a workstation or a Linux board (edgesep.runtime.hop_loop); not part
 * of a firmware folder.
 *
 * @prefix@_host_model_step is a @prefix@_model_fn: it copies the framer's model inputs into
 * the interpreter's input buffers, calls invoke() (which runs the model in place), then copies
 * the interpreter's output buffers out, in the contract's tensor order.
 */
#include "@prefix@_framer.h"

#include <string.h>

typedef int (*@prefix@_invoke_fn)(void);

typedef struct {
    void *inputs[@PREFIX@_NB_INPUTS];   /* the interpreter's input buffers */
    void *outputs[@PREFIX@_NB_OUTPUTS]; /* and its output buffers */
    @prefix@_invoke_fn invoke;          /* 0 on success */
} @prefix@_host_model;

int @prefix@_host_model_step(void *user, const void *const *inputs, void *const *outputs);
uint32_t @prefix@_host_nonfinite_samples(const @prefix@_framer *framer);

int @prefix@_host_model_step(void *user, const void *const *inputs, void *const *outputs)
{
    const @prefix@_host_model *model = (const @prefix@_host_model *)user;
    unsigned i;
    int status;
    for (i = 0; i < @PREFIX@_NB_INPUTS; ++i) {
        memcpy(model->inputs[i], inputs[i], @prefix@_inputs[i].bytes);
    }
    status = model->invoke();
    if (status != 0) {
        return status;
    }
    for (i = 0; i < @PREFIX@_NB_OUTPUTS; ++i) {
        memcpy(outputs[i], model->outputs[i], @prefix@_outputs[i].bytes);
    }
    return 0;
}

/* NaN/inf input samples the framer replaced by 0 since its reset. */
uint32_t @prefix@_host_nonfinite_samples(const @prefix@_framer *framer)
{
    return framer->nonfinite_samples;
}
