"""The gate modes. The callback moves every gated layer through them."""

DENSE = 0  # every gate is 1 (warm-up, or no callback at all)
SELECTING = 1  # selected gates 1, the others a softmax over logits that learn
SETTLING = 2  # selected gates 1, the others 0: the model fits the selected set

NAMES = {DENSE: "dense", SELECTING: "selecting", SETTLING: "settling"}
