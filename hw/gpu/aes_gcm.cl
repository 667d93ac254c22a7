/*
 * sluice: AES-GCM (NIST SP 800-38D) for SRTP (RFC 7714), batched, in
 * OpenCL C 1.2. Host side: crates/sluice-gpu.
 *
 * Constant time. No table is indexed by a secret and no branch or loop
 * bound depends on a secret:
 *  - AES is bitsliced: eight 32-bit words hold bit i (word i) of the 32
 *    bytes of two blocks, and SubBytes is the Boyar-Peralta depth-16
 *    circuit (ePrint 2011/332: 32 AND, 83 XOR/XNOR) evaluated on the
 *    words, so every S-box lookup is the same sequence of logic ops.
 *    ShiftRows and MixColumns are fixed shifts, rotations and masks.
 *  - GHASH multiplies in GF(2^128) as 16 carry-less 32x32 products, each
 *    one a few integer multiplications of masked operands ("holes" every
 *    4 bits, so carries never reach a bit that is kept), then a fixed
 *    shift-and-XOR reduction. Integer multiply is constant time on GPUs
 *    and on the CPUs the CPU drivers run on.
 *  - Branches and loop bounds depend only on public values: lengths,
 *    block indices, the round count, the work-item id and the key slot.
 *
 * Work split: one work-group of WG items per job. Item l encrypts the
 * counter-block pairs l, l+WG, ... (pair 0 holds J0, whose encryption
 * masks the tag), then GHASH runs in parallel as sum_j X_j * H^(m-j+1)
 * with the key's precomputed powers of H, XOR-reduced in local memory.
 */

#ifndef WG
#define WG 64
#endif

/* Words of one key slot; must match crates/sluice-gpu/src/layout.rs. */
#define KEY_WORDS 640
#define KEY_ROUNDS_AT 0
#define KEY_RK_AT 8
#define KEY_POW_AT 128
#define MAX_BLOCKS 128
/* Words of one job descriptor. */
#define JOB_WORDS 12

/* ---- bitsliced AES ---------------------------------------------------- */

/* Bit position of byte k (row k%4, column k/4) of block b in a word:
 * row r is byte r of the word, and inside it column c sits at bits
 * 2c (block 0) and 2c+1 (block 1). */
#define BIT_POS(k, b) (8u * ((k) & 3u) + 2u * ((k) >> 2) + (b)) /* for reading */

/* Exchanges the bits of `a` at positions p + n (p in `mask`) with the
 * bits of `b` at positions p. */
#define SWAPMOVE(a, b, mask, n) do {                  \
        const uint t_ = (((a) >> (n)) ^ (b)) & (mask); \
        (b) ^= t_;                                     \
        (a) ^= t_ << (n);                              \
    } while (0)

/* Word m = 2c + b holds column c of block b little-endian (row r in byte
 * r); this 8x8 bit transpose inside every byte lane turns that into
 * word j = bit j of every byte, at bit 8r + 2c + b: BIT_POS. It is its
 * own inverse. */
static void transpose8(uint *x) {
    for (uint m = 0; m < 8; m += 2) {
        SWAPMOVE(x[m], x[m + 1], 0x55555555u, 1u);
    }
    for (uint m = 0; m < 8; m += 4) {
        SWAPMOVE(x[m], x[m + 2], 0x33333333u, 2u);
        SWAPMOVE(x[m + 1], x[m + 3], 0x33333333u, 2u);
    }
    for (uint m = 0; m < 4; m++) {
        SWAPMOVE(x[m], x[m + 4], 0x0F0F0F0Fu, 4u);
    }
}

static void bitslice(const uchar *b0, const uchar *b1, uint *q) {
    for (uint c = 0; c < 4; c++) {
        q[2 * c] = (uint)b0[4 * c] | ((uint)b0[4 * c + 1] << 8)
                 | ((uint)b0[4 * c + 2] << 16) | ((uint)b0[4 * c + 3] << 24);
        q[2 * c + 1] = (uint)b1[4 * c] | ((uint)b1[4 * c + 1] << 8)
                     | ((uint)b1[4 * c + 2] << 16) | ((uint)b1[4 * c + 3] << 24);
    }
    transpose8(q);
}

static void unbitslice(const uint *q, uchar *b0, uchar *b1) {
    uint x[8];
    for (uint i = 0; i < 8; i++) {
        x[i] = q[i];
    }
    transpose8(x);
    for (uint c = 0; c < 4; c++) {
        for (uint r = 0; r < 4; r++) {
            b0[4 * c + r] = (uchar)(x[2 * c] >> (8u * r));
            b1[4 * c + r] = (uchar)(x[2 * c + 1] >> (8u * r));
        }
    }
}

/* SubBytes on all 32 bytes at once: the Boyar-Peralta circuit. Its input
 * U0 is the most significant bit of a byte (word 7), its output S0 too. */
static void sub_bytes(uint *q) {
    const uint u0 = q[7], u1 = q[6], u2 = q[5], u3 = q[4];
    const uint u4 = q[3], u5 = q[2], u6 = q[1], u7 = q[0];

    /* top linear layer */
    const uint t1 = u0 ^ u3, t2 = u0 ^ u5, t3 = u0 ^ u6, t4 = u3 ^ u5;
    const uint t5 = u4 ^ u6, t6 = t1 ^ t5, t7 = u1 ^ u2, t8 = u7 ^ t6;
    const uint t9 = u7 ^ t7, t10 = t6 ^ t7, t11 = u1 ^ u5, t12 = u2 ^ u5;
    const uint t13 = t3 ^ t4, t14 = t6 ^ t11, t15 = t5 ^ t11;
    const uint t16 = t5 ^ t12, t17 = t9 ^ t16, t18 = u3 ^ u7;
    const uint t19 = t7 ^ t18, t20 = t1 ^ t19, t21 = u6 ^ u7;
    const uint t22 = t7 ^ t21, t23 = t2 ^ t22, t24 = t2 ^ t10;
    const uint t25 = t20 ^ t17, t26 = t3 ^ t16, t27 = t1 ^ t12;
    const uint d = u7;

    /* nonlinear middle layer (inversion in GF(2^4)^2) */
    const uint m1 = t13 & t6, m2 = t23 & t8, m3 = t14 ^ m1, m4 = t19 & d;
    const uint m5 = m4 ^ m1, m6 = t3 & t16, m7 = t22 & t9, m8 = t26 ^ m6;
    const uint m9 = t20 & t17, m10 = m9 ^ m6, m11 = t1 & t15;
    const uint m12 = t4 & t27, m13 = m12 ^ m11, m14 = t2 & t10;
    const uint m15 = m14 ^ m11, m16 = m3 ^ m2, m17 = m5 ^ t24;
    const uint m18 = m8 ^ m7, m19 = m10 ^ m15, m20 = m16 ^ m13;
    const uint m21 = m17 ^ m15, m22 = m18 ^ m13, m23 = m19 ^ t25;
    const uint m24 = m22 ^ m23, m25 = m22 & m20, m26 = m21 ^ m25;
    const uint m27 = m20 ^ m21, m28 = m23 ^ m25, m29 = m28 & m27;
    const uint m30 = m26 & m24, m31 = m20 & m23, m32 = m27 & m31;
    const uint m33 = m27 ^ m25, m34 = m21 & m22, m35 = m24 & m34;
    const uint m36 = m24 ^ m25, m37 = m21 ^ m29, m38 = m32 ^ m33;
    const uint m39 = m23 ^ m30, m40 = m35 ^ m36, m41 = m38 ^ m40;
    const uint m42 = m37 ^ m39, m43 = m37 ^ m38, m44 = m39 ^ m40;
    const uint m45 = m42 ^ m41;
    const uint m46 = m44 & t6, m47 = m40 & t8, m48 = m39 & d;
    const uint m49 = m43 & t16, m50 = m38 & t9, m51 = m37 & t17;
    const uint m52 = m42 & t15, m53 = m45 & t27, m54 = m41 & t10;
    const uint m55 = m44 & t13, m56 = m40 & t23, m57 = m39 & t19;
    const uint m58 = m43 & t3, m59 = m38 & t22, m60 = m37 & t20;
    const uint m61 = m42 & t1, m62 = m45 & t4, m63 = m41 & t2;

    /* bottom linear layer */
    const uint l0 = m61 ^ m62, l1 = m50 ^ m56, l2 = m46 ^ m48;
    const uint l3 = m47 ^ m55, l4 = m54 ^ m58, l5 = m49 ^ m61;
    const uint l6 = m62 ^ l5, l7 = m46 ^ l3, l8 = m51 ^ m59;
    const uint l9 = m52 ^ m53, l10 = m53 ^ l4, l11 = m60 ^ l2;
    const uint l12 = m48 ^ m51, l13 = m50 ^ l0, l14 = m52 ^ m61;
    const uint l15 = m55 ^ l1, l16 = m56 ^ l0, l17 = m57 ^ l1;
    const uint l18 = m58 ^ l8, l19 = m63 ^ l4, l20 = l0 ^ l1;
    const uint l21 = l1 ^ l7, l22 = l3 ^ l12, l23 = l18 ^ l2;
    const uint l24 = l15 ^ l9, l25 = l6 ^ l10, l26 = l7 ^ l9;
    const uint l27 = l8 ^ l10, l28 = l11 ^ l14, l29 = l11 ^ l17;

    q[7] = l6 ^ l24;
    q[6] = ~(l16 ^ l26);
    q[5] = ~(l19 ^ l28);
    q[4] = l6 ^ l21;
    q[3] = l20 ^ l22;
    q[2] = l25 ^ l29;
    q[1] = ~(l13 ^ l27);
    q[0] = ~(l6 ^ l23);
}

/* Row r (byte r of each word) turns left by r columns (2r bits). */
static void shift_rows(uint *q) {
    for (uint i = 0; i < 8; i++) {
        const uint x = q[i];
        q[i] = (x & 0x000000FFu)
             | ((x & 0x0000FC00u) >> 2) | ((x & 0x00000300u) << 6)
             | ((x & 0x00F00000u) >> 4) | ((x & 0x000F0000u) << 4)
             | ((x & 0xC0000000u) >> 6) | ((x & 0x3F000000u) << 2);
    }
}

/* out_r = 2(a_r ^ a_r+1) ^ a_r+1 ^ a_r+2 ^ a_r+3 per column, where
 * rotating a word right by 8 bits brings row r+1 to row r, and
 * doubling is the bitsliced xtime (x^8 = x^4 + x^3 + x + 1). */
static void mix_columns(uint *q) {
    uint r[8], y[8];
    for (uint i = 0; i < 8; i++) {
        r[i] = rotate(q[i], 24u);
        y[i] = q[i] ^ r[i];
    }
    uint x[8];
    x[0] = y[7];
    x[1] = y[0] ^ y[7];
    x[2] = y[1];
    x[3] = y[2] ^ y[7];
    x[4] = y[3] ^ y[7];
    x[5] = y[4];
    x[6] = y[5];
    x[7] = y[6];
    for (uint i = 0; i < 8; i++) {
        q[i] = x[i] ^ r[i] ^ rotate(y[i], 16u);
    }
}

static void add_round_key(uint *q, __global const uint *rk) {
    for (uint i = 0; i < 8; i++) {
        q[i] ^= rk[i];
    }
}

/* Encrypts two blocks in place under the bitsliced round keys `rk`. */
static void aes_encrypt2(__global const uint *rk, uint rounds, uchar *b0, uchar *b1) {
    uint q[8];
    bitslice(b0, b1, q);
    add_round_key(q, rk);
    for (uint r = 1; r < rounds; r++) {
        sub_bytes(q);
        shift_rows(q);
        mix_columns(q);
        add_round_key(q, rk + 8u * r);
    }
    sub_bytes(q);
    shift_rows(q);
    add_round_key(q, rk + 8u * rounds);
    unbitslice(q, b0, b1);
}

/* SubWord of the key schedule through the same circuit (byte j of `w`
 * at bit j of every slice word). */
static uint sub_word(uint w) {
    uint q[8];
    for (uint i = 0; i < 8; i++) {
        uint s = 0;
        for (uint j = 0; j < 4; j++) {
            s |= ((w >> (8u * j + i)) & 1u) << j;
        }
        q[i] = s;
    }
    sub_bytes(q);
    uint out = 0;
    for (uint j = 0; j < 4; j++) {
        for (uint i = 0; i < 8; i++) {
            out |= ((q[i] >> j) & 1u) << (8u * j + i);
        }
    }
    return out;
}

/* ---- GHASH in 32-bit words -------------------------------------------- */

static uint rev32(uint x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
    return rotate(x, 16u);
}

/* Carry-less 32x32 -> 64 product: each operand split into four classes
 * of bits 4 apart; a class-by-class integer product sums at most 8 ones
 * per bit, so its carries stay inside the 3 bits above, which belong to
 * other classes and are masked off. */
static ulong bmul32(uint x, uint y) {
    const ulong x0 = x & 0x11111111u, x1 = x & 0x22222222u;
    const ulong x2 = x & 0x44444444u, x3 = x & 0x88888888u;
    const ulong y0 = y & 0x11111111u, y1 = y & 0x22222222u;
    const ulong y2 = y & 0x44444444u, y3 = y & 0x88888888u;
    ulong z0 = (x0 * y0) ^ (x1 * y3) ^ (x2 * y2) ^ (x3 * y1);
    ulong z1 = (x0 * y1) ^ (x1 * y0) ^ (x2 * y3) ^ (x3 * y2);
    ulong z2 = (x0 * y2) ^ (x1 * y1) ^ (x2 * y0) ^ (x3 * y3);
    ulong z3 = (x0 * y3) ^ (x1 * y2) ^ (x2 * y1) ^ (x3 * y0);
    z0 &= 0x1111111111111111ul;
    z1 &= 0x2222222222222222ul;
    z2 &= 0x4444444444444444ul;
    z3 &= 0x8888888888888888ul;
    return z0 | z1 | z2 | z3;
}

/* Field elements as 4 words, coefficient i of the polynomial at bit i%32
 * of word i/32 (GCM's bit order reversed into plain polynomial order). */
static void gf_mul(const uint *a, const uint *b, uint *r) {
    uint p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (uint i = 0; i < 4; i++) {
        for (uint j = 0; j < 4; j++) {
            const ulong z = bmul32(a[i], b[j]);
            p[i + j] ^= (uint)z;
            p[i + j + 1] ^= (uint)(z >> 32);
        }
    }
    /* x^128 = x^7 + x^2 + x + 1: fold the high half T in as
     * T + Tx + Tx^2 + Tx^7, then once more for the 7 bits that pushed
     * past x^127. */
    const uint *t = p + 4;
    for (uint k = 0; k < 4; k++) {
        uint v = p[k] ^ t[k] ^ (t[k] << 1) ^ (t[k] << 2) ^ (t[k] << 7);
        if (k > 0) {
            v ^= (t[k - 1] >> 31) ^ (t[k - 1] >> 30) ^ (t[k - 1] >> 25);
        }
        r[k] = v;
    }
    const uint u = (t[3] >> 31) ^ (t[3] >> 30) ^ (t[3] >> 25);
    r[0] ^= u ^ (u << 1) ^ (u << 2) ^ (u << 7);
}

static void block_to_poly(const uchar *x, uint *w) {
    for (uint k = 0; k < 4; k++) {
        const uint be = ((uint)x[4 * k] << 24) | ((uint)x[4 * k + 1] << 16)
                      | ((uint)x[4 * k + 2] << 8) | (uint)x[4 * k + 3];
        w[k] = rev32(be);
    }
}

static void poly_to_block(const uint *w, uchar *x) {
    for (uint k = 0; k < 4; k++) {
        const uint be = rev32(w[k]);
        x[4 * k] = (uchar)(be >> 24);
        x[4 * k + 1] = (uchar)(be >> 16);
        x[4 * k + 2] = (uchar)(be >> 8);
        x[4 * k + 3] = (uchar)be;
    }
}

/* ---- kernels ---------------------------------------------------------- */

/* One work-item per key: expands `raw[32 i ..]` (16 or 32 bytes, length
 * in setup[2 i + 1]) into key slot setup[2 i]: the round count, the
 * bitsliced round keys, and H^1 .. H^MAX_BLOCKS. */
__kernel void gcm_setup(__global const uchar *raw, __global const uint *setup,
                        __global uint *keys, uint count) {
    const uint i = get_global_id(0);
    if (i >= count) {
        return;
    }
    __global uint *slot = keys + (size_t)setup[2 * i] * KEY_WORDS;
    const uint nk = setup[2 * i + 1] / 4u;
    const uint rounds = nk + 6u;
    uint w[60];
    for (uint k = 0; k < nk; k++) {
        const __global uchar *b = raw + 32u * i + 4u * k;
        w[k] = ((uint)b[0] << 24) | ((uint)b[1] << 16) | ((uint)b[2] << 8) | (uint)b[3];
    }
    uint rcon = 1;
    for (uint k = nk; k < 4u * (rounds + 1u); k++) {
        uint t = w[k - 1];
        if (k % nk == 0) {
            t = sub_word(rotate(t, 8u)) ^ (rcon << 24);
            rcon = (rcon << 1) ^ (0x11Bu & (0u - (rcon >> 7)));
        } else if (nk > 6u && k % nk == 4u) {
            t = sub_word(t);
        }
        w[k] = w[k - nk] ^ t;
    }
    slot[KEY_ROUNDS_AT] = rounds;
    for (uint r = 0; r <= rounds; r++) {
        uchar b[16];
        for (uint k = 0; k < 16; k++) {
            b[k] = (uchar)(w[4 * r + k / 4] >> (24u - 8u * (k % 4u)));
        }
        uint q[8];
        bitslice(b, b, q);
        for (uint j = 0; j < 8; j++) {
            slot[KEY_RK_AT + 8 * r + j] = q[j];
        }
    }
    uchar h[16], other[16];
    for (uint k = 0; k < 16; k++) {
        h[k] = 0;
        other[k] = 0;
    }
    aes_encrypt2(slot + KEY_RK_AT, rounds, h, other);
    uint hp[4], acc[4];
    block_to_poly(h, hp);
    for (uint k = 0; k < 4; k++) {
        acc[k] = hp[k];
    }
    for (uint p = 0; p < MAX_BLOCKS; p++) {
        for (uint k = 0; k < 4; k++) {
            slot[KEY_POW_AT + 4 * p + k] = acc[k];
        }
        uint next[4];
        gf_mul(acc, hp, next);
        for (uint k = 0; k < 4; k++) {
            acc[k] = next[k];
        }
    }
}

/* Loads 16 bytes of `src[at ..]`, zero past `end` (public lengths). */
static void load_block(__global const uchar *src, uint at, uint end, uchar *b) {
    for (uint k = 0; k < 16; k++) {
        b[k] = (at + k < end) ? src[at + k] : (uchar)0;
    }
}

/* One work-group per job. Job j's descriptor, jobs[JOB_WORDS j ..]:
 * key slot, nonce (3 words, bytes little-endian), aad offset and length
 * in `in`, data offset and length in `in`, output offset in `out`.
 * Seal (decrypt = 0): out = E(in), tag over the output. Open: tag over
 * the input, out = D(in); the host compares the tag. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gcm_crypt(__global const uint *keys, __global const uint *jobs,
               __global const uchar *in, __global uchar *out,
               __global uchar *tags, uint decrypt) {
    __local uint part[WG * 4];
    __local uchar ej0[16];
    const uint job = get_group_id(0);
    const uint lid = get_local_id(0);
    __global const uint *desc = jobs + (size_t)job * JOB_WORDS;
    __global const uint *slot = keys + (size_t)desc[0] * KEY_WORDS;
    const uint rounds = slot[KEY_ROUNDS_AT];
    const uint aad_at = desc[4], aad_len = desc[5];
    const uint data_at = desc[6], data_len = desc[7], out_at = desc[8];
    const uint nb = (data_len + 15u) / 16u;
    const uint na = (aad_len + 15u) / 16u;
    const uint m = na + nb + 1u;
    if (m > MAX_BLOCKS) {
        /* The host never sends such a job; refuse rather than read past
         * the powers of H. */
        return;
    }

    uchar nonce[12];
    for (uint k = 0; k < 12; k++) {
        nonce[k] = (uchar)(desc[1 + k / 4] >> (8u * (k % 4u)));
    }
    /* Counter block t (0 = J0) is nonce || be32(t + 1). */
    for (uint pair = lid; 2u * pair <= nb; pair += WG) {
        uchar c[2][16];
        for (uint h = 0; h < 2; h++) {
            const uint ctr = 2u * pair + h + 1u;
            for (uint k = 0; k < 12; k++) {
                c[h][k] = nonce[k];
            }
            c[h][12] = (uchar)(ctr >> 24);
            c[h][13] = (uchar)(ctr >> 16);
            c[h][14] = (uchar)(ctr >> 8);
            c[h][15] = (uchar)ctr;
        }
        aes_encrypt2(slot + KEY_RK_AT, rounds, c[0], c[1]);
        for (uint h = 0; h < 2; h++) {
            const uint t = 2u * pair + h;
            if (t == 0) {
                for (uint k = 0; k < 16; k++) {
                    ej0[k] = c[0][k];
                }
            } else if (t <= nb) {
                const uint base = 16u * (t - 1u);
                for (uint k = 0; k < 16 && base + k < data_len; k++) {
                    out[out_at + base + k] = in[data_at + base + k] ^ c[h][k];
                }
            }
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);

    /* GHASH over aad || ciphertext || lengths as sum X_j H^(m - j). */
    __global const uchar *ct = decrypt ? in : (__global const uchar *)out;
    const uint ct_at = decrypt ? data_at : out_at;
    uint acc[4] = {0, 0, 0, 0};
    for (uint j = lid; j < m; j += WG) {
        uchar b[16];
        if (j < na) {
            load_block(in, aad_at + 16u * j, aad_at + aad_len, b);
        } else if (j < na + nb) {
            load_block(ct, ct_at + 16u * (j - na), ct_at + data_len, b);
        } else {
            const ulong abits = (ulong)aad_len * 8ul, cbits = (ulong)data_len * 8ul;
            for (uint k = 0; k < 8; k++) {
                b[k] = (uchar)(abits >> (56u - 8u * k));
                b[8 + k] = (uchar)(cbits >> (56u - 8u * k));
            }
        }
        uint x[4], h[4], prod[4];
        block_to_poly(b, x);
        for (uint k = 0; k < 4; k++) {
            h[k] = slot[KEY_POW_AT + 4u * (m - j - 1u) + k];
        }
        gf_mul(x, h, prod);
        for (uint k = 0; k < 4; k++) {
            acc[k] ^= prod[k];
        }
    }
    for (uint k = 0; k < 4; k++) {
        part[4 * lid + k] = acc[k];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            for (uint k = 0; k < 4; k++) {
                part[4 * lid + k] ^= part[4 * (lid + s) + k];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        uint s[4];
        uchar tag[16];
        for (uint k = 0; k < 4; k++) {
            s[k] = part[k];
        }
        poly_to_block(s, tag);
        for (uint k = 0; k < 16; k++) {
            tags[16u * job + k] = tag[k] ^ ej0[k];
        }
    }
}
