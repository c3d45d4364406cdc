"""python -m t2t.models [NAME ...]: parameter count and training FLOPs per target token
of the named variants (all when none given), at T5's 512 input / 114 target tokens."""
import sys

from t2t.models import variants


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or sorted(variants.VARIANTS)
    print(f"{'variant':24s} {'architecture':16s} {'params':>15s} {'GFLOPs/target token':>20s}")
    for name in names:
        cfg = variants.get_model_config(name)
        flops = variants.flops_per_token(cfg, 512, 114) / 1e9
        print(f"{name:24s} {cfg.architecture:16s} {variants.count_params(cfg):15,d} {flops:20.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
