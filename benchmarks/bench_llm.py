"""Throughput of the LLM stage with the default offline models, and the implied full ml-100k precompute time.

    python benchmarks/bench_llm.py [--users 4] [--pairs_per_user 8] [--embed_pairs 512] [--threads 2]
                                   [--skip_semantic] [--embed_dtypes float32 bfloat16]

Rows: profile generation (eq. 2-3), semantic negatives (eq. 4-5) with and without the per-user prefix KV cache,
the fine-tuned embed path (hybrid prompt -> [EOS] state, §4.3) with and without the prefix cache, and the
fine-tuning step time. Correctness first: the cached and uncached paths must agree before anything is timed.
The estimates assume ml-100k's RecBole 8:1:1 split: 80,808 training pairs, 943 users, 1,682 items.
"""
import argparse
import os
import random
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

ML100K_PAIRS, ML100K_USERS, ML100K_ITEMS = 80_808, 943, 1_682  # the training split of seed 2020


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _gemm_gflops(dtype, m=512, k=576, n=1536, repeats=30):
    a, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    for _ in range(3):
        torch.nn.functional.linear(a, w)
    _, s = _timed(lambda: [torch.nn.functional.linear(a, w) for _ in range(repeats)])
    return 2 * m * k * n * repeats / s / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--pairs_per_user", type=int, default=8)
    parser.add_argument("--embed_pairs", type=int, default=512,
                        help="about this many pairs: embed_pairs // 85 random users with all their pairs (ml-100k "
                             "has ~85 per user, so the count varies)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip_semantic", action="store_true")
    parser.add_argument("--item_text", choices=["none", "title"], default="none", help="hnlm_ft_item_text")
    parser.add_argument("--embed_dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                        help="hnlm_dtype values for the fine-tuned embed rows (same pairs; fidelity vs float32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import recbole

    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.generation import Generator
    from recbole_hnlm.llm.hybrid_encoder import HybridPromptEncoder, PromptGroup, info_nce
    from recbole_hnlm.llm.models import TextEncoder, load_causal_lm
    from recbole_hnlm.llm.profiles import ProfileBook, build_profiles
    from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate
    from recbole_hnlm.llm.semantic import NEGATIVE_TEMPLATE, _chunk_negatives

    data_path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example")
    text = DatasetText(data_path, "ml-100k")
    rows = []

    class Rows(list):
        def append(self, row):  # print each row as soon as it is measured (long runs)
            print(f"  {row[0]}: {row[1]}  {row[2]}", flush=True)
            super().append(row)

    rows = Rows()
    (lm, tok, ref), load_s = _timed(lambda: load_causal_lm("smollm2", device="cpu"))
    rows.append(("load SmolLM2-135M (GGUF, dequantised)", f"{load_s:.1f} s", ""))
    cfg = LLMConfig(item_profiles=False)
    users = text.users()[:args.users]
    pairs = [p for u in users for p in [x for x in text.pairs if x[0] == u][:args.pairs_per_user]]

    if not args.skip_semantic:
        encoder = TextEncoder("minilm", batch_size=64)
        gen = Generator(lm, tok, max_new_tokens=cfg.profile_max_new_tokens, batch_size=cfg.gen_batch_size,
                        retries=cfg.retries)
        with tempfile.TemporaryDirectory() as tmp:
            book = ProfileBook(os.path.join(tmp, "p.jsonl"))
            items = sorted({i for _, i in pairs})[:args.users]
            gen.tokens_generated = 0
            _, s = _timed(lambda: build_profiles(text, gen, ref.name, book, users=[], items=items,
                                                 item_profiles=True, progress=False))
            item_rate = len(items) / s
            rows.append(("item profiles (eq. 2)", f"{item_rate:.3f} profiles/s",
                         f"{ML100K_ITEMS / item_rate / 60:.0f} min for {ML100K_ITEMS} items"))
            _, s = _timed(lambda: build_profiles(text, gen, ref.name, book, users=users, items=[],
                                                 item_profiles=False, progress=False))
            user_rate = len(users) / s
            ok = sum(book.summary("user", u) is not None for u in users)
            rows.append(("user profiles (eq. 3)", f"{user_rate:.3f} profiles/s",
                         f"{ML100K_USERS / user_rate / 60:.0f} min for {ML100K_USERS} users; {ok}/{len(users)} ok"))
            template = PromptTemplate.load(NEGATIVE_TEMPLATE)
            formatter = ChatFormatter(tok)
            gen.max_new_tokens = cfg.max_new_tokens
            for cached in (True, False):
                cfg.prefix_cache = cached
                gen.tokens_generated = 0
                (r, emb, rec), s = _timed(lambda: _chunk_negatives(range(len(pairs)), pairs, text, book, gen, encoder,
                                                                   template, formatter, cfg))
                rate = len(pairs) / s
                rows.append((f"semantic negatives, prefix cache {'on' if cached else 'off'} (eq. 4-5)",
                             f"{rate:.3f} pairs/s",
                             f"{ML100K_PAIRS / rate / 3600:.1f} h for {ML100K_PAIRS} pairs; {len(r)}/{len(pairs)} ok;"
                             f" {gen.tokens_generated / s:.0f} tok/s"))
                if cached:
                    example = next((x for x in rec if x["ok"]), None)
                    if example:
                        rows.append(("  example negative", example["negatives"][0][:60], f"user {example['user']}"))

    # fine-tuned embed path (§4.3): LoRA merged -> base model cost; users drawn at random (pair counts vary a lot)
    torch.manual_seed(0)
    hybrid = HybridPromptEncoder(lm, tok, cf_dim=64, soft_tokens=1, lora=None).eval()
    n_users = max(2, args.embed_pairs // 85)  # ml-100k: ~85 training pairs per user
    embed_users = random.Random(0).sample(text.users(), n_users)
    per_user = {u: [i for x, i in text.pairs if x == u] for u in embed_users}
    titles = {u: "liked: " + "; ".join(text.items[e.item].title for e in text.user_history(u, cfg.ft_history))
              for u in embed_users}
    total = sum(len(v) for v in per_user.values())

    def item_text(i):
        if args.item_text == "none":
            return ""
        info = text.items[i]
        return f" {info.title} ({info.attributes.get('year', '')}, {info.attributes.get('genres', '')})"

    def group(u, items):
        return PromptGroup(titles[u], torch.randn(64), [item_text(i) for i in items], torch.randn(len(items), 64))

    groups = [group(u, per_user[u]) for u in embed_users]
    for dtype in ("float32", "bfloat16"):  # the floor of the embed: dense GEMM throughput at its shapes
        rows.append((f"GEMM {dtype} (512x576 @ 576x1536, torch.nn.functional.linear)",
                     f"{_gemm_gflops(getattr(torch, dtype)):.0f} GFLOP/s", "the embed is ~50 TFLOP of such GEMMs"))
    reference = None
    for dtype in args.embed_dtypes:
        model = hybrid
        if dtype != "float32":  # same soft-token MLPs, the LM loaded in dtype
            lm_d, tok_d, _ = load_causal_lm("smollm2", dtype=dtype, device="cpu")
            torch.manual_seed(0)
            model = HybridPromptEncoder(lm_d, tok_d, cf_dim=64, soft_tokens=1, lora=None).eval()
        with torch.inference_mode():
            model.embed(groups[:1], cfg.embed_batch_size, cfg.embed_tokens)  # warm-up
            out, s = _timed(lambda: model.embed(groups, cfg.embed_batch_size, cfg.embed_tokens))
        rate = total / s
        note = f"({total} pairs of {n_users} random users)"
        if dtype == "float32":
            reference = out
        elif reference is not None:  # the sampler centres the stored vectors: compare what it sees
            mu = reference.mean(0)
            cos = torch.nn.functional.cosine_similarity(out - mu, reference - mu, dim=-1)
            note += f"; centred cosine to float32: mean {cos.mean():.3f}, min {cos.min():.3f}"
        rows.append((f"fine-tuned embed {dtype}, item text {args.item_text}, prefix shared per user (§4.3)",
                     f"{rate:.1f} pairs/s", f"{ML100K_PAIRS / rate / 60:.1f} min for {ML100K_PAIRS} pairs {note}"))
    with torch.inference_mode():
        sub = [(u, i) for u in embed_users[:2] for i in per_user[u][:16]]
        _, s = _timed(lambda: [hybrid.encode_full([titles[u] for u, _ in sub[k:k + 16]],
                                                  [item_text(i) for _, i in sub[k:k + 16]], torch.randn(16, 64),
                                                  torch.randn(16, 64)) for k in range(0, len(sub), 16)])
        rate_full = len(sub) / s
        rows.append((f"fine-tuned embed, item text {args.item_text}, one full prompt per pair",
                     f"{rate_full:.1f} pairs/s",
                     f"{ML100K_PAIRS / rate_full / 60:.1f} min for {ML100K_PAIRS} pairs"))
    # fine-tuning step (LoRA r=16 + MLPs, 16 pairs, InfoNCE): user groups of ft_pairs_per_user vs independent pairs
    lm2, tok2, _ = load_causal_lm("smollm2", device="cpu")
    tuned = HybridPromptEncoder(lm2, tok2, cf_dim=64, soft_tokens=1, lora=dict(r=16, alpha=32, dropout=0.05))
    opt = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=2e-4)
    busy = [u for u in embed_users if len(per_user[u]) >= 4] or embed_users

    def step(groups):
        q = tuned.encode_groups(groups)
        loss = info_nce(q, tuned.targets(torch.randn(q.shape[0], 64)), None, 0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for per in (cfg.ft_pairs_per_user, 1):
        batch = [group(busy[k % len(busy)], per_user[busy[k % len(busy)]][:per]) for k in range(16 // per)]
        step(batch)
        _, s = _timed(lambda: step(batch))
        rows.append((f"fine-tuning step (16 pairs, {per} per user prompt, LoRA r16)", f"{s:.1f} s/step",
                     f"{cfg.ft_max_train_pairs / 16 * s / 60:.1f} min for the default {cfg.ft_max_train_pairs} pairs"))
    width = max(len(r[0]) for r in rows)
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}, {os.cpu_count()} cpus")
    print(f"{'stage'.ljust(width)} | {'throughput':>22} | estimate / notes")
    print("-" * (width + 60))
    for name, value, note in rows:
        print(f"{name.ljust(width)} | {value:>22} | {note}")


if __name__ == "__main__":
    main()
