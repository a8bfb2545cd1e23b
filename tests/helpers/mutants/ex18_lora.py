"""Wrong LoRA layers (exercise 18): minidit's LoRALinear with one method written the typical wrong way."""
import torch
import torch.nn.functional as F

from helpers.mutants import Mutant
from minidit.lora import LoRALinear


class ScaleAlpha(LoRALinear):
    def forward(self, x):
        y = self.base(x)
        return y if self.merged else y + self.alpha * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)


class Transposed(LoRALinear):
    def forward(self, x):
        y = self.base(x)
        return y if self.merged else y + self.scale * (self.dropout(x) @ self.lora_B @ self.lora_A)


class DropoutAlways(LoRALinear):
    def forward(self, x):
        y = self.base(x)
        h = F.dropout(x, self.dropout.p, training=True)
        return y if self.merged else y + self.scale * (h @ self.lora_A.T @ self.lora_B.T)


class DropoutOnBothPaths(LoRALinear):
    def forward(self, x):
        x = self.dropout(x)
        y = self.base(x)
        return y if self.merged else y + self.scale * (x @ self.lora_A.T @ self.lora_B.T)


class MergedAddsAgain(LoRALinear):
    def forward(self, x):
        return self.base(x) + self.scale * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)


class DetachedAdapter(LoRALinear):
    def forward(self, x):
        y = self.base(x)
        return y if self.merged else y + self.scale * (x @ self.lora_A.detach().T @ self.lora_B.T)


class MergeWithoutScale(LoRALinear):
    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.base.weight += self.lora_B @ self.lora_A
            self.merged = True


class MergeTwice(LoRALinear):
    @torch.no_grad()
    def merge(self):
        self.base.weight += self.delta_weight()
        self.merged = True


class UnmergeAdds(LoRALinear):
    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.base.weight += self.delta_weight()
            self.merged = False


MUTANTS = [
    Mutant("scale alpha instead of alpha / r", {"LoRALinear": ScaleAlpha}, "the scale is alpha / rank, not alpha"),
    Mutant("B A applied transposed (x @ B @ A)", {"LoRALinear": Transposed}, "the update is applied transposed"),
    Mutant("dropout also at eval (F.dropout training=True)", {"LoRALinear": DropoutAlways}, "dropout is still on"),
    Mutant("dropout on the base path too", {"LoRALinear": DropoutOnBothPaths}, "the base path sees x itself"),
    Mutant("merged forward adds the update again", {"LoRALinear": MergedAddsAgain},
           "must not add the low-rank path again"),
    Mutant("lora_A detached", {"LoRALinear": DetachedAdapter}, "no gradient reaches lora_A"),
    Mutant("merge forgets the scale", {"LoRALinear": MergeWithoutScale}, "you left out the scale"),
    Mutant("merge without the merged check", {"LoRALinear": MergeTwice}, "added the update twice"),
    Mutant("unmerge adds instead of subtracting", {"LoRALinear": UnmergeAdds}, "unmerge added the update again"),
]
