/*
 * Times libjpeg(-turbo) decoding one JPEG, two ways, as CPU time per frame:
 *   raw  - the three planes as they are coded (what GStreamer's jpegdec does),
 *   gray - the luma only (out_color_space = JCS_GRAYSCALE).
 * Used for docs/experiments/camera-stage-cost.md:
 *   gcc -O2 docs/experiments/jpeg_decode_time.c -o /tmp/jpeg_decode_time -ljpeg
 *   python3 docs/experiments/jpeg_frames.py /tmp/frames
 *   for f in $(ls -d /tmp/frames/[a-z]*.jpg); do echo $f; /tmp/jpeg_decode_time $f; done
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <jpeglib.h>

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static unsigned char *plane[3];

static void decode(const unsigned char *buf, unsigned long n, int gray) {
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, buf, n);
    jpeg_read_header(&c, TRUE);
    if (gray) {
        c.out_color_space = JCS_GRAYSCALE;
        jpeg_start_decompress(&c);
        while (c.output_scanline < c.output_height) {
            JSAMPROW rows[16];
            unsigned k, m = c.output_height - c.output_scanline;
            if (m > 16) m = 16;
            for (k = 0; k < m; k++)
                rows[k] = plane[0] + (size_t)(c.output_scanline + k) * c.output_width;
            jpeg_read_scanlines(&c, rows, m);
        }
    } else {
        c.raw_data_out = TRUE;
        jpeg_start_decompress(&c);
        int w = c.output_width, rows = c.max_v_samp_factor * DCTSIZE;
        JSAMPROW y[16], u[16], v[16];
        JSAMPARRAY planes[3] = {y, u, v};
        while (c.output_scanline < c.output_height) {
            for (int k = 0; k < rows; k++) {
                int r = c.output_scanline + k;
                if (r >= (int)c.output_height) r = c.output_height - 1;
                y[k] = plane[0] + (size_t)r * w;
                u[k] = plane[1] + (size_t)r * w;
                v[k] = plane[2] + (size_t)r * w;
            }
            jpeg_read_raw_data(&c, planes, rows);
        }
    }
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FRAME.jpg\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n);
    if (!buf || fread(buf, 1, n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(f);
    for (int k = 0; k < 3; k++) plane[k] = malloc(4096 * 4096);
    for (int rep = 0; rep < 3; rep++) {
        const int frames = 300;
        double t0 = cpu_s();
        for (int i = 0; i < frames; i++) decode(buf, n, 0);
        double raw = (cpu_s() - t0) / frames * 1e3;
        t0 = cpu_s();
        for (int i = 0; i < frames; i++) decode(buf, n, 1);
        double gray = (cpu_s() - t0) / frames * 1e3;
        printf("raw %.3f ms, gray %.3f ms per frame (%.2f of raw)\n", raw, gray, gray / raw);
    }
    return 0;
}
