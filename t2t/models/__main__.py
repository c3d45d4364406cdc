"""python -m t2t.models [NAME ...]: parameter count and training FLOPs per target token
of the named variants (all when none given), at T5's 512 input / 114 target tokens."""
import argparse
import sys

from t2t.models import variants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2t.models", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"model variants (default: all {len(variants.VARIANTS)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in variants.VARIANTS]
    if unknown:
        parser.error(f"unknown model variant(s) {unknown}; known: {', '.join(sorted(variants.VARIANTS))}")
    names = args.names or sorted(variants.VARIANTS)
    print(f"{'variant':24s} {'architecture':16s} {'params':>15s} {'GFLOPs/target token':>20s}")
    for name in names:
        cfg = variants.get_model_config(name)
        flops = variants.flops_per_token(cfg, 512, 114) / 1e9
        print(f"{name:24s} {cfg.architecture:16s} {variants.count_params(cfg):15,d} {flops:20.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
