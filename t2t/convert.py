"""Convert checkpoints between Hugging Face T5 and t2t.

  python -m t2t.convert --from hf --src HF_DIR --dst T2T_DIR [--allow-pickle] [--dtype bfloat16]
  python -m t2t.convert --from t2t --to hf --src T2T_DIR --dst HF_DIR

A t2t checkpoint is <dst>/model_config.json + <dst>/params/ (Orbax); see t2t/workdir/model_dir.py.
HF weights are read from safetensors; pytorch_model.bin (a pickle) only with --allow-pickle.
"""
from __future__ import annotations

import argparse
import sys

from t2t.models import hf_t5 as convert
from t2t.workdir import model_dir


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m t2t.convert", description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="src_format", choices=("hf", "t2t"), required=True)
    p.add_argument("--to", dest="dst_format", choices=("hf", "t2t"), default=None,
                   help="default: the other format")
    p.add_argument("--src", required=True, help="source checkpoint directory")
    p.add_argument("--dst", required=True, help="destination directory (created)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow reading a trusted pytorch_model.bin (pickle) when no safetensors")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="compute dtype stored in the t2t model config (HF import; default float32)")
    args = p.parse_args(argv)
    args.dst_format = args.dst_format or ("t2t" if args.src_format == "hf" else "hf")
    if args.src_format == args.dst_format:
        p.error(f"--from {args.src_format} --to {args.dst_format}: nothing to convert")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.src_format == "hf":
        cfg, params = convert.load_hf_checkpoint(args.src, allow_pickle=args.allow_pickle)
        if args.dtype:
            cfg.dtype = args.dtype
        model_dir.save_checkpoint(args.dst, cfg, params)
    else:
        cfg, params = model_dir.load_checkpoint(args.src)
        convert.save_hf_checkpoint(args.dst, cfg, params)
    print(f"wrote {args.dst_format} checkpoint to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
