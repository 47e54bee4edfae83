/* One row through the fused form of the fraud network (optimize/export.py, FusedForm):
 * derived inputs (log1p of clamped columns), standardisation, the members' first layers as
 * one dense layer, each member's later layers, then head + member mean + Platt scaling as
 * one dot product and a sigmoid.
 *
 * Why it exists: a lone single-record request is the common case, and ONNX Runtime's fixed
 * cost per run (about 5 us warm, ~20 us when the core went idle between requests) is larger
 * than this network's arithmetic. Loaded with ctypes by optimize.fused_row.FusedRowBackend,
 * which checks the ABI below and the package's reference scores before the server may pick it.
 *
 * Weights are row-major with the input dimension first: w[i * n_out + j] links input i to
 * output j. The caller owns every buffer; nothing here allocates.
 */
#include <math.h>
#include <stddef.h>

/* Bump whenever fused_net or a function signature changes: the loader refuses a library
 * whose version or struct size differs from its ctypes description. */
#ifndef FUSED_ROW_ABI_VERSION
#define FUSED_ROW_ABI_VERSION 2
#endif

typedef struct {
    int n_features;  /* raw features in a row */
    int n_derived;   /* log1p(max(x[c], 0)) for each c in columns */
    int members;     /* ensemble members */
    int width;       /* first hidden layer's width per member */
    int n_rest;      /* hidden layers after the first */
    int silu;        /* 1: SiLU, 0: ReLU */
    const int *columns;          /* (n_derived,) */
    const float *center, *scale; /* (n_features + n_derived,) */
    const float *w_first;        /* (n_features + n_derived, members * width) */
    const float *b_first;        /* (members * width,) */
    const int *rest_width;       /* (n_rest,) output width of each later layer */
    const float *const *w_rest;  /* [layer * members + member] -> (in, out) */
    const float *const *b_rest;  /* [layer * members + member] -> (out,) */
    const float *w_head;         /* (members * last width,) slope / members folded in */
    float b_head;                /* slope * mean(head biases) + intercept */
    float *scratch;              /* see fused_row_scratch_floats */
} fused_net;

static inline float activate(float v, int silu) {
    return silu ? v / (1.0f + expf(-v)) : (v < 0.0f ? 0.0f : v); /* NaN stays NaN, as in torch */
}

#define BLOCK 32 /* outputs accumulated in registers at a time (4 AVX2 registers) */

/* out = act(in @ w + b), BLOCK outputs at a time: the block's sums stay in registers over
 * all inputs and are stored once (storing partial sums on every input made the time depend
 * on where the process's buffers happened to sit, 7.0 or 8.5 us a row). The loops over a
 * block run over outputs, so they vectorise. Built twice (AVX2 + FMA, and the x86-64
 * baseline); the loader picks by CPU. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
static void dense(const float *in, int n_in, const float *w, const float *b, int n_out,
                  float *out, int silu) {
    int j0 = 0;
    for (; j0 + BLOCK <= n_out; j0 += BLOCK) {
        float acc[BLOCK];
        for (int j = 0; j < BLOCK; j++) acc[j] = b[j0 + j];
        for (int i = 0; i < n_in; i++) {
            const float v = in[i];
            const float *row = w + (size_t)i * n_out + j0;
            for (int j = 0; j < BLOCK; j++) acc[j] += v * row[j];
        }
        for (int j = 0; j < BLOCK; j++) out[j0 + j] = activate(acc[j], silu);
    }
    for (int j = j0; j < n_out; j++) { /* the last, partial block */
        float acc = b[j];
        for (int i = 0; i < n_in; i++) acc += in[i] * w[(size_t)i * n_out + j];
        out[j] = activate(acc, silu);
    }
}

static int widest(const fused_net *n) {
    int w = n->width;
    for (int l = 0; l < n->n_rest; l++)
        if (n->rest_width[l] > w) w = n->rest_width[l];
    return w;
}

int fused_row_abi_version(void) { return FUSED_ROW_ABI_VERSION; }

int fused_row_struct_size(void) { return (int)sizeof(fused_net); }

/* Floats of scratch space `net` needs. */
int fused_row_scratch_floats(const fused_net *n) {
    return n->n_features + n->n_derived + 2 * n->members * widest(n);
}

/* Scores for `rows` rows of x (rows, n_features) into out (rows,). */
void fused_row_score(const fused_net *n, const float *x, int rows, float *out) {
    const int n_inputs = n->n_features + n->n_derived;
    const int span = n->members * widest(n);
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * n->n_features;
        float *z = n->scratch, *h = z + n_inputs, *g = h + span;
        for (int i = 0; i < n->n_features; i++) z[i] = row[i];
        for (int c = 0; c < n->n_derived; c++) {
            const float v = row[n->columns[c]];
            z[n->n_features + c] = log1pf(v < 0.0f ? 0.0f : v); /* torch.clamp keeps NaN */
        }
        for (int i = 0; i < n_inputs; i++) z[i] = (z[i] - n->center[i]) / n->scale[i];
        dense(z, n_inputs, n->w_first, n->b_first, n->members * n->width, h, n->silu);
        int w = n->width;
        for (int l = 0; l < n->n_rest; l++) {
            const int o = n->rest_width[l];
            for (int k = 0; k < n->members; k++) {
                const int at = l * n->members + k;
                dense(h + k * w, w, n->w_rest[at], n->b_rest[at], o, g + k * o, n->silu);
            }
            float *t = h;
            h = g;
            g = t;
            w = o;
        }
        float logit = n->b_head;
        for (int i = 0; i < n->members * w; i++) logit += h[i] * n->w_head[i];
        out[r] = 1.0f / (1.0f + expf(-logit));
    }
}
