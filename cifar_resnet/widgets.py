"""The parameter-budget explorer: core ipywidgets controls for (N, B_i, C_i, F, K, P) and live
outputs (total, budget bar, per-stage table, FLOPs, the line of code), counted from the
configuration on every change, so it stays instant and works in JupyterLab and Colab alike."""
from __future__ import annotations

import html

import ipywidgets as w

from .budget import ParameterReport, count_parameters
from .config import DOWNSAMPLING, PARAMETER_BUDGET, PRESETS, STYLES, ConfigurationError, ModelConfig

CUSTOM = "(custom)"
MAX_STAGES = 4
POOL_MAX = 32  # P's slider at most; it stops at the last feature map's side


def budget_bar_html(total: int, budget: int = PARAMETER_BUDGET) -> str:
    """A horizontal bar of ``total`` against ``budget``: green, orange above 90%, red when over."""
    share = total / budget
    color = "#c62828" if total > budget else "#ef8f00" if share > 0.9 else "#2e7d32"
    return (f'<div style="width:100%;max-width:560px;background:#e0e0e0;height:18px;border-radius:3px">'
            f'<div style="width:{min(share, 1) * 100:.1f}%;background:{color};height:100%;'
            f'border-radius:3px"></div></div>'
            f'<span style="color:{color}">{share:.1%} of the {budget:,} budget</span>')


def stage_table_html(report: ParameterReport) -> str:
    """The per-stage table: output shape, parameters, share of the total, FLOPs."""
    flops = {g: 0 for g in report.by_group}
    for layer in report.layers:
        flops[layer.group] += layer.flops
    rows = "".join(
        f"<tr><td>{s.name}</td><td>{'&times;'.join(map(str, s.output_shape))}</td>"
        f"<td style='text-align:right'>{s.parameters:,}</td>"
        f"<td style='text-align:right'>{s.parameters / report.total:.1%}</td>"
        f"<td style='text-align:right'>{flops[s.name] / 1e6:,.1f}</td></tr>" for s in report.stages)
    return ("<table><tr><th>part</th><th>output (C&times;H&times;W)</th><th>parameters</th>"
            f"<th>share</th><th>MFLOPs</th></tr>{rows}</table>")


class BudgetExplorer:
    """Controls for a ModelConfig and what it costs, updated live. Display it in a notebook cell.

    ``config()`` returns the configuration the controls describe; ``total`` (an HTML widget)
    shows the parameter count, ``error`` the configuration error, if any.
    """

    def __init__(self, preset: str = "reference", budget: int = PARAMETER_BUDGET):
        self.budget = budget
        self._quiet = False
        style = {"description_width": "initial"}
        self.preset = w.Dropdown(options=[CUSTOM, *PRESETS], value=preset, description="preset")
        self.stages = w.ToggleButtons(options=[("3 stages", 3), ("4 stages", 4)], value=3, description="N")
        wide = lambda: w.Layout(width="310px")  # noqa: E731  (one Layout each: hiding a stage hides only its own)
        self.blocks = [w.IntSlider(2, min=1, max=8, description=f"B{i + 1} blocks", style=style, layout=wide())
                       for i in range(MAX_STAGES)]
        self.channels = [w.IntSlider(64 * 2 ** i, min=1, max=512, description=f"C{i + 1} channels", style=style,
                                     layout=wide()) for i in range(MAX_STAGES)]
        self.scale = w.FloatSlider(1.0, min=0.25, max=2.0, step=0.05, description="scale all channels",
                                   style=style, readout_format=".2f")
        self.kernel = w.Dropdown(options=[1, 3, 5, 7], value=3, description="F conv kernel", style=style)
        self.skip_kernel = w.Dropdown(options=[1, 3, 5], value=1, description="K skip kernel", style=style)
        self.pool = w.IntSlider(8, min=1, max=POOL_MAX, description="P pool", style=style)
        self.downsample = w.Dropdown(options=DOWNSAMPLING, value="stride", description="downsample by", style=style)
        self.style = w.Dropdown(options=STYLES, value="torchvision", description="layer style", style=style)
        # CSS classes on the widgets themselves (the notebook's sanitizer strips them from HTML values)
        self.total, self.bar, self.table, self.flops, self.code, self.error = (
            w.HTML().add_class(f"budget-{name}") for name in ("total", "bar", "table", "flops", "code", "error"))
        controls = [self.stages, *self.blocks, *self.channels, self.scale, self.kernel, self.skip_kernel, self.pool,
                    self.downsample, self.style]
        for control in controls:
            control.observe(self._changed, names="value")
        self.preset.observe(self._preset_chosen, names="value")
        per_stage = [w.HBox([b, c]) for b, c in zip(self.blocks, self.channels)]
        self.widget = w.HBox([
            w.VBox([self.preset, self.stages, *per_stage, self.scale,
                    w.HBox([self.kernel, self.skip_kernel]), w.HBox([self.pool, self.downsample]), self.style],
                   layout=w.Layout(min_width="640px", flex="0 0 auto")),
            w.VBox([self.total, self.bar, self.flops, self.table, self.code, self.error],
                   layout=w.Layout(margin="0 0 0 24px"))],
            layout=w.Layout(flex_flow="row wrap")).add_class("budget-explorer")  # narrow pages: outputs below
        self._preset_chosen({"new": preset})

    def config(self, pool: int | None = None) -> ModelConfig:
        """The configuration the controls describe (with another ``pool`` if given; raises
        ConfigurationError if impossible)."""
        n = self.stages.value
        return ModelConfig(blocks=[s.value for s in self.blocks[:n]],
                           channels=[max(1, round(s.value * self.scale.value)) for s in self.channels[:n]],
                           kernel=self.kernel.value, skip_kernel=self.skip_kernel.value, pool=pool or self.pool.value,
                           downsample=self.downsample.value, style=self.style.value)

    def _keep_choices_valid(self) -> None:
        """No control the student touches can make the configuration impossible: P's slider reaches only
        as far as the last feature map (switching stages moves it), and the airbench layout, which halves
        every stage by a max pool, fixes the downsampling."""
        self._quiet = True
        try:
            if self.style.value == "airbench":
                self.downsample.value = "maxpool"
            self.downsample.disabled = self.style.value == "airbench"
            self.pool.max = self.config(pool=1).feature_sizes[-1]  # ipywidgets lowers the value with it
        except ConfigurationError:
            pass  # shown by refresh
        finally:
            self._quiet = False

    def _preset_chosen(self, change) -> None:
        if change["new"] == CUSTOM or self._quiet:
            return
        c = PRESETS[change["new"]].model
        self._quiet = True
        try:
            self.stages.value = c.stages
            for i in range(c.stages):
                self.blocks[i].value, self.channels[i].value = c.blocks[i], c.channels[i]
            self.scale.value, self.kernel.value = 1.0, c.kernel[0]
            self.pool.max = POOL_MAX  # refresh narrows it to the preset's last map
            self.skip_kernel.value, self.pool.value = c.skip_kernel[0], c.pool
            self.downsample.value, self.style.value = c.downsample, c.style
        finally:
            self._quiet = False
        self.refresh()

    def _changed(self, _change) -> None:
        if not self._quiet:
            self.refresh()

    def refresh(self) -> None:
        """Recount and redraw every output from the current control values."""
        self._keep_choices_valid()
        n = self.stages.value
        for i in range(MAX_STAGES):
            shown = "flex" if i < n else "none"
            self.blocks[i].layout.display = self.channels[i].layout.display = shown
        try:
            config = self.config()
        except ConfigurationError as e:
            self.error.value = f"<b style='color:#c62828'>Invalid configuration:</b> {html.escape(str(e))}"
            for out in (self.total, self.bar, self.table, self.flops, self.code):
                out.value = ""
            return
        report = count_parameters(config, self.budget)
        verdict = "fits" if report.fits_budget else "OVER"
        color = "#2e7d32" if report.fits_budget else "#c62828"
        self.error.value = ""
        self.total.value = (f"<span style='font-size:1.4em'><b>{report.total:,}</b> parameters"
                            f"</span> <b style='color:{color}'>{verdict}</b>")
        self.bar.value = budget_bar_html(report.total, self.budget)
        self.flops.value = f"<span>{report.flops / 1e6:,.1f} MFLOPs</span> forward, per image"
        self.table.value = stage_table_html(report)
        self.code.value = f"<code>model_config = {html.escape(config.code())}</code>"
        matches = [name for name, p in PRESETS.items() if p.model == config]  # presets may share a network
        match = self.preset.value if self.preset.value in matches else (matches or [CUSTOM])[0]
        self._quiet = True
        try:
            self.preset.value = match
        finally:
            self._quiet = False

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def budget_explorer(preset: str = "reference", budget: int = PARAMETER_BUDGET) -> BudgetExplorer:
    """The interactive parameter-budget explorer, starting from ``preset``."""
    return BudgetExplorer(preset, budget)
