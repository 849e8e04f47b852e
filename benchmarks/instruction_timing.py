"""Latency and throughput of the x86-64 instructions the zen5 description (isa/uarch/zen5.toml) times
differently from Zen 4, measured on this host: the [MEAS] source of that file. No asserts: it prints what it
measures. Needs gcc and a CPU with AVX-512 (VNNI and BF16 for those rows).

    .venv/bin/python benchmarks/instruction_timing.py

Each instruction runs 12 times per loop trip: into 12 different registers (throughput: cycles per
instruction) and, where it can, through one register (latency: the dependent chain's cycles per
instruction), best of 5 runs of 2 million trips, timed with clock_gettime. Cycles come from the clock a chain
of dependent adds measures (one cycle each), as `isasim host` measures it; sources are 1.0f in every lane,
so division and square root take their common path.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_speed import host  # noqa: E402  (the same host line in every benchmark)

Z = {
 "vaddps_zmm": ("vaddps %%zmm13,%%zmm14,%%zmm{d}", "vaddps %%zmm13,%%zmm0,%%zmm0"),
 "vsubps_zmm": ("vsubps %%zmm13,%%zmm14,%%zmm{d}", "vsubps %%zmm13,%%zmm0,%%zmm0"),
 "vmulps_zmm": ("vmulps %%zmm13,%%zmm14,%%zmm{d}", "vmulps %%zmm13,%%zmm0,%%zmm0"),
 "vdivps_zmm": ("vdivps %%zmm13,%%zmm14,%%zmm{d}", "vdivps %%zmm13,%%zmm0,%%zmm0"),
 "vsqrtps_zmm": ("vsqrtps %%zmm13,%%zmm{d}", "vsqrtps %%zmm0,%%zmm0"),
 "vmaxps_zmm": ("vmaxps %%zmm13,%%zmm14,%%zmm{d}", "vmaxps %%zmm13,%%zmm0,%%zmm0"),
 "vminps_zmm": ("vminps %%zmm13,%%zmm14,%%zmm{d}", "vminps %%zmm13,%%zmm0,%%zmm0"),
 "vfmadd231ps_zmm": ("vfmadd231ps %%zmm13,%%zmm14,%%zmm{d}", "vfmadd231ps %%zmm13,%%zmm14,%%zmm0"),
 "vfnmadd231ps_zmm": ("vfnmadd231ps %%zmm13,%%zmm14,%%zmm{d}", "vfnmadd231ps %%zmm13,%%zmm14,%%zmm0"),
 "vandps_zmm": ("vandps %%zmm13,%%zmm14,%%zmm{d}", "vandps %%zmm13,%%zmm0,%%zmm0"),
 "vxorps_zmm": ("vxorps %%zmm13,%%zmm14,%%zmm{d}", "vxorps %%zmm13,%%zmm0,%%zmm0"),
 "vmovaps_zmm": ("vmovaps %%zmm13,%%zmm{d}", None),
 "vmovups_load_zmm": ("vmovups {o64}(%0),%%zmm{d}", None),
 "vmovups_store_zmm": ("vmovups %%zmm13,{o64}(%0)", None),
 "vbroadcastss_load_zmm": ("vbroadcastss {o4}(%0),%%zmm{d}", None),
 "vbroadcastss_zmm": ("vbroadcastss %%xmm13,%%zmm{d}", None),
 "vcvttps2dq_zmm": ("vcvttps2dq %%zmm13,%%zmm{d}", None),
 "vpaddd_zmm": ("vpaddd %%zmm13,%%zmm14,%%zmm{d}", "vpaddd %%zmm13,%%zmm0,%%zmm0"),
 "vpslld_zmm": ("vpslld $1,%%zmm13,%%zmm{d}", "vpslld $1,%%zmm0,%%zmm0"),
 "vrndscaleps_zmm": ("vrndscaleps $1,%%zmm13,%%zmm{d}", "vrndscaleps $1,%%zmm0,%%zmm0"),
 "vcmpps_zmm": ("vcmpps $1,%%zmm13,%%zmm14,%%k{k}", None),
 "vblendmps_zmm": ("vblendmps %%zmm13,%%zmm14,%%zmm{d}%{{%%k1%}}", "vblendmps %%zmm13,%%zmm0,%%zmm0%{{%%k1%}}"),
 "vextractf64x4_zmm": ("vextractf64x4 $1,%%zmm13,%%ymm{d}", None),
 "vpdpbusd_zmm": ("vpdpbusd %%zmm13,%%zmm14,%%zmm{d}", "vpdpbusd %%zmm13,%%zmm14,%%zmm0"),
 "vcvtdq2ps_zmm": ("vcvtdq2ps %%zmm13,%%zmm{d}", None),
 "vpmovdb_store_zmm": ("vpmovdb %%zmm13,{o16}(%0)", None),
 "vdpbf16ps_zmm": ("vdpbf16ps %%zmm13,%%zmm14,%%zmm{d}", "vdpbf16ps %%zmm13,%%zmm14,%%zmm0"),
 "vcvtneps2bf16_zmm": ("vcvtneps2bf16 %%zmm13,%%ymm{d}", None),
 "vaddps_ymm": ("vaddps %%ymm13,%%ymm14,%%ymm{d}", "vaddps %%ymm13,%%ymm0,%%ymm0"),
 "vmulps_ymm": ("vmulps %%ymm13,%%ymm14,%%ymm{d}", "vmulps %%ymm13,%%ymm0,%%ymm0"),
 "vmaxps_ymm": ("vmaxps %%ymm13,%%ymm14,%%ymm{d}", "vmaxps %%ymm13,%%ymm0,%%ymm0"),
 "vfmadd231ps_ymm": ("vfmadd231ps %%ymm13,%%ymm14,%%ymm{d}", "vfmadd231ps %%ymm13,%%ymm14,%%ymm0"),
 "vsubps_ymm": ("vsubps %%ymm13,%%ymm14,%%ymm{d}", "vsubps %%ymm13,%%ymm0,%%ymm0"),
 "vminps_ymm": ("vminps %%ymm13,%%ymm14,%%ymm{d}", "vminps %%ymm13,%%ymm0,%%ymm0"),
 "vpdpbusd_ymm": ("%{{vex%}} vpdpbusd %%ymm13,%%ymm14,%%ymm{d}", "%{vex%} vpdpbusd %%ymm13,%%ymm14,%%ymm0"),
 "vpaddd_ymm": ("vpaddd %%ymm13,%%ymm14,%%ymm{d}", "vpaddd %%ymm13,%%ymm0,%%ymm0"),
 "vandps_ymm": ("vandps %%ymm13,%%ymm14,%%ymm{d}", "vandps %%ymm13,%%ymm0,%%ymm0"),
 "vsubss": ("vsubss %%xmm13,%%xmm14,%%xmm{d}", "vsubss %%xmm13,%%xmm0,%%xmm0"),
 "vminss": ("vminss %%xmm13,%%xmm14,%%xmm{d}", "vminss %%xmm13,%%xmm0,%%xmm0"),
 "vaddss": ("vaddss %%xmm13,%%xmm14,%%xmm{d}", "vaddss %%xmm13,%%xmm0,%%xmm0"),
 "vmulss": ("vmulss %%xmm13,%%xmm14,%%xmm{d}", "vmulss %%xmm13,%%xmm0,%%xmm0"),
 "vfmadd231ss": ("vfmadd231ss %%xmm13,%%xmm14,%%xmm{d}", "vfmadd231ss %%xmm13,%%xmm14,%%xmm0"),
 "vmaxss": ("vmaxss %%xmm13,%%xmm14,%%xmm{d}", "vmaxss %%xmm13,%%xmm0,%%xmm0"),
}


def source() -> str:
    """The C program: one function per instruction and form, and a main that prints the table."""
    clobbers = '"xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","memory"'
    loop = "double t=now(); for(long i=0;i<n;i++) __asm__ volatile"
    out = ["#include <stdio.h>\n#include <time.h>\n"
           "static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);"
           "return t.tv_sec+t.tv_nsec*1e-9;}",
           "static float buf[8192] __attribute__((aligned(64)));"]
    names = []
    for i, (name, (tp, lat)) in enumerate(Z.items()):
        # 12 independent instructions (destinations 0..11) for the throughput, 12 dependent ones for the latency
        body = "".join(tp.format(d=j, o64=64 * j, o4=4 * j, o16=16 * j, k=1 + j % 6) + "\\n\\t" for j in range(12))
        out.append(f'static double t{i}(long n){{{loop}("{body}"::"r"(buf):{clobbers},'
                   f'"k1","k2","k3","k4","k5","k6"); return now()-t;}}')
        if lat:
            chain = "".join(lat + "\\n\\t" for _ in range(12))
            out.append(f'static double l{i}(long n){{{loop}("{chain}"::"r"(buf):{clobbers},"k1"); return now()-t;}}')
        names.append((i, name, bool(lat)))
    out.append(f'static double chain(long n){{{loop}(".rept 12\\n\\tadd $1,%%rax\\n\\t.endr":::"rax"); '
               'return now()-t;}')
    out.append("static double best(double(*f)(long), long n){double b=1e9; "
               "for(int r=0;r<5;r++){double t=f(n); if(t<b)b=t;} return b;}")
    main = ["int main(){ long n=2000000;",
            ' __asm__ volatile("mov $0x3f800000,%%eax\\n\\tvpbroadcastd %%eax,%%zmm13\\n\\t'
            'vmovaps %%zmm13,%%zmm14\\n\\tvmovaps %%zmm13,%%zmm0\\n\\tkxnorw %%k1,%%k1,%%k1"'
            ':::"rax","xmm0","xmm13","xmm14","k1");',
            ' double ghz=12.0*8*n/best(chain,8*n)/1e9; printf("clock %.2f\\n",ghz);']
    for i, name, has_latency in names:
        latency = f"double la=best(l{i},n)*ghz*1e9/(12.0*n); " if has_latency else "double la=-1; "
        main.append(f" {{double tp=best(t{i},n)*ghz*1e9/(12.0*n); " + latency
                    + f'printf("%-22s tp %.3f lat %.2f\\n","{name}",tp,la);}}')
    main.append("}")
    return "\n".join(out + main)


def main() -> None:
    print(f"host: {host()}")
    with tempfile.TemporaryDirectory() as tmp:
        c, exe = Path(tmp) / "timing.c", Path(tmp) / "timing"
        c.write_text(source())
        subprocess.run(["gcc", "-O1", "-march=native", "-o", str(exe), str(c)], check=True)
        print(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout, end="")


if __name__ == "__main__":
    main()
