"""The options registry of drop-in extensions (A1111's ``shared.opts.add_option`` / ``OptionInfo``).

Where things live, for every reader (the Settings page, ``/sdapi/v1/options``, ``shared.opts``):

* **Values** stay in the one typed settings object: ``services.settings.options`` (:class:`~modules.core.
  settings.Options`, which keeps keys it does not declare as extra fields). Registering an option whose key is
  not stored yet stores its default (unsaved until the next save, as A1111 writes every option to
  ``config.json``), so ``GET /sdapi/v1/options`` lists it and ``shared.opts.<key>`` reads it.
* **Descriptions** (label, section, UI component and its arguments, ``onchange``, ``restrict_api``...) are the
  :class:`ExtensionOptions` below, reachable as ``compat.options()`` and, for extension code, as
  ``shared.opts.data_labels``. ``infos()`` lists them in registration order; ``sections()`` groups them by
  A1111's ``section`` tuple ``(id, title)`` (``options_section``), the grouping A1111's Settings page shows.
* **A1111's own option keys** that Easel's settings model does not declare are registered at start-up from
  :data:`A1111_OPTION_DEFAULTS` with A1111 v1.10's defaults, so clients that read or write them
  (``send_seed``, ``img2img_background_color``...) find them. They change nothing in Easel's processing.

Writes from the API and from ``shared.opts.set`` are checked against the registered default's type (a 422 that
names the key) and run the option's ``onchange`` callbacks after the value is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modules.core.errors import UserInputError

log = logging.getLogger(__name__)

A1111_SECTION = ("a1111", "A1111 compatibility (no effect in Easel)")

# A1111 v1.10 option keys and defaults (facts of its settings contract). Keys Easel's Options model declares are
# skipped at registration: Easel's field, its default and its validation win.
A1111_OPTION_DEFAULTS: dict[str, Any] = {
    "save_images_add_number": True, "save_images_replace_action": "Replace", "grid_extended_filename": False,
    "grid_only_if_multiple": True, "grid_prevent_empty_spots": False, "grid_zip_filename_pattern": "", "n_rows": -1,
    "font": "", "grid_text_active_color": "#000000", "grid_text_inactive_color": "#999999",
    "grid_background_color": "#ffffff", "save_txt": False, "save_images_before_face_restoration": False,
    "save_images_before_highres_fix": False, "save_images_before_color_correction": False, "save_mask": False,
    "save_mask_composite": False, "webp_lossless": False, "export_for_4chan": True, "img_downscale_threshold": 4.0,
    "target_side_length": 4000.0, "img_max_size_mp": 200.0, "use_original_name_batch": True,
    "use_upscaler_name_as_suffix": False, "save_selected_only": True, "save_write_log_csv": True,
    "save_init_img": False, "temp_dir": "", "clean_temp_dir_at_start": False, "save_incomplete_images": False,
    "notification_audio": True, "notification_volume": 100, "outdir_txt2img_grids": "", "outdir_img2img_grids": "",
    "outdir_save": "log/images", "outdir_init_images": "outputs/init-images", "grid_save_to_dirs": True,
    "use_save_to_dirs_for_ui": False, "directories_max_prompt_words": 8, "ESRGAN_tile": 192,
    "ESRGAN_tile_overlap": 8, "realesrgan_enabled_models": ["R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"],
    "dat_enabled_models": ["DAT x2", "DAT x3", "DAT x4"], "DAT_tile": 192, "DAT_tile_overlap": 8,
    "set_scale_by_when_changing_upscaler": False, "face_restoration": False, "code_former_weight": 0.5,
    "face_restoration_unload": False, "auto_launch_browser": "Local", "enable_console_prompts": False,
    "show_warnings": False, "show_gradio_deprecation_warnings": True, "memmon_poll_rate": 8,
    "samples_log_stdout": False, "multiple_tqdm": True, "enable_upscale_progressbar": True,
    "print_hypernet_extra": False, "list_hidden_files": True, "disable_mmap_load_safetensors": False,
    "hide_ldm_prints": True, "dump_stacks_on_signal": False, "profiling_enable": False,
    "api_enable_requests": True, "api_forbid_local_requests": True, "api_useragent": "",
    "unload_models_when_training": False, "pin_memory": False, "save_optimizer_state": False,
    "save_training_settings_to_txt": True, "dataset_filename_word_regex": "", "dataset_filename_join_string": " ",
    "training_image_repeats_per_epoch": 1, "training_write_csv_every": 500,
    "training_xattention_optimizations": False, "training_enable_tensorboard": False,
    "training_tensorboard_save_images": False, "training_tensorboard_flush_every": 120,
    "sd_checkpoints_keep_in_cpu": True, "sd_unet": "Automatic", "enable_quantization": False,
    "emphasis": "Original", "enable_batch_seeds": True, "comma_padding_backtrack": 20,
    "sdxl_clip_l_skip": False, "upcast_attn": False, "tiling": False, "hires_fix_refiner_pass": "second pass",
    "enable_prompt_comments": True, "sd3_enable_t5": False, "sdxl_crop_top": 0, "sdxl_crop_left": 0,
    "sdxl_refiner_low_aesthetic_score": 2.5, "sdxl_refiner_high_aesthetic_score": 6.0,
    "sd_vae_checkpoint_cache": 0, "sd_vae_overrides_per_model_preferences": True, "auto_vae_precision_bfloat16": False,
    "auto_vae_precision": True, "sd_vae_encode_method": "Full", "sd_vae_decode_method": "Full",
    "inpainting_mask_weight": 1.0, "initial_noise_multiplier": 1.0, "img2img_extra_noise": 0.0,
    "img2img_fix_steps": False, "img2img_background_color": "#ffffff", "img2img_editor_height": 720,
    "img2img_sketch_default_brush_color": "#ffffff", "img2img_inpaint_mask_brush_color": "#ffffff",
    "img2img_inpaint_sketch_default_brush_color": "#ffffff", "return_mask": False, "return_mask_composite": False,
    "img2img_batch_show_results_limit": 32, "overlay_inpaint": True, "s_min_uncond": 0.0, "s_min_uncond_all": False,
    "token_merging_ratio_img2img": 0.0, "token_merging_ratio_hr": 0.0, "pad_cond_uncond": False,
    "pad_cond_uncond_v0": False, "persistent_cond_cache": True, "batch_cond_uncond": True, "fp8_storage": "Disable",
    "cache_fp16_weight": False, "auto_backcompat": True, "use_old_emphasis_implementation": False,
    "use_old_karras_scheduler_sigmas": False, "no_dpmpp_sde_batch_determinism": False,
    "use_old_hires_fix_width_height": False, "hires_fix_use_firstpass_conds": False, "use_old_scheduling": False,
    "use_downcasted_alpha_bar": False, "refiner_switch_by_sample_steps": False,
    "interrogate_keep_models_in_memory": False, "interrogate_return_ranks": False, "interrogate_clip_num_beams": 1,
    "interrogate_clip_min_length": 24, "interrogate_clip_max_length": 48, "interrogate_clip_dict_limit": 1500,
    "interrogate_clip_skip_categories": [], "interrogate_deepbooru_score_threshold": 0.5,
    "deepbooru_sort_alpha": True, "deepbooru_use_spaces": True, "deepbooru_escape": True, "deepbooru_filter_tags": "",
    "extra_networks_show_hidden_directories": True, "extra_networks_dir_button_function": False,
    "extra_networks_hidden_models": "When searched", "extra_networks_default_multiplier": 1.0,
    "extra_networks_card_width": 0, "extra_networks_card_height": 0, "extra_networks_card_text_scale": 1.0,
    "extra_networks_card_show_desc": True, "extra_networks_card_description_is_html": False,
    "extra_networks_card_order_field": "Path", "extra_networks_card_order": "Ascending",
    "extra_networks_tree_view_style": "Dirs", "extra_networks_tree_view_default_enabled": True,
    "extra_networks_tree_view_default_width": 180.0, "extra_networks_add_text_separator": " ",
    "ui_extra_networks_tab_reorder": "", "textual_inversion_print_at_load": False,
    "textual_inversion_add_hashes_to_infotext": True, "sd_hypernetwork": "None", "keyedit_precision_attention": 0.1,
    "keyedit_precision_extra": 0.05, "keyedit_delimiters": ".,\\/!?%^*;:{}=`~() ",
    "keyedit_delimiters_whitespace": ["Tab", "Carriage Return", "Line Feed"], "keyedit_move": True,
    "disable_token_counters": False, "include_styles_into_token_counters": True, "return_grid": True,
    "do_not_show_images": False, "js_modal_lightbox": True, "js_modal_lightbox_initially_zoomed": True,
    "js_modal_lightbox_gamepad": False, "js_modal_lightbox_gamepad_repeat": 250.0,
    "sd_webui_modal_lightbox_icon_opacity": 1,
    "sd_webui_modal_lightbox_toolbar_opacity": 0.9, "gallery_height": "", "open_dir_button_choice": "Subdirectory",
    "compact_prompt_box": False, "samplers_in_dropdown": True, "dimensions_and_batch_together": True,
    "sd_checkpoint_dropdown_use_short": False, "hires_fix_show_sampler": False, "hires_fix_show_prompts": False,
    "txt2img_settings_accordion": False, "img2img_settings_accordion": False, "interrupt_after_current": True,
    "localization": "None", "ui_tab_order": [], "hidden_tabs": [], "ui_reorder_list": [],
    "gradio_theme": "Default", "gradio_themes_cache": True, "show_progress_in_title": True,
    "send_seed": True, "send_size": True, "enable_reloading_ui_scripts": False,
    "add_user_name_to_info": False, "add_version_to_infotext": True, "disable_weights_auto_swap": True,
    "infotext_skip_pasting": [], "infotext_styles": "Apply if any", "show_progressbar": True,
    "live_previews_image_format": "png", "show_progress_grid": True, "show_progress_type": "Approx NN",
    "live_preview_allow_lowvram_full": False, "live_preview_refresh_period": 1000.0,
    "live_preview_fast_interrupt": False, "js_live_preview_in_modal_lightbox": False,
    "prevent_screen_sleep_during_generation": True, "hide_samplers": [], "ddim_discretize": "uniform",
    "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": 0.0, "s_noise": 1.0, "sigma_min": 0.0, "sigma_max": 0.0, "rho": 0.0,
    "always_discard_next_to_last_sigma": False, "sgm_noise_multiplier": False, "uni_pc_variant": "bh1",
    "uni_pc_skip_type": "time_uniform", "uni_pc_order": 3, "uni_pc_lower_order_final": True,
    "sd_noise_schedule": "Default", "skip_early_cond": 0.0, "beta_dist_alpha": 0.6, "beta_dist_beta": 0.6,
    "postprocessing_enable_in_main_ui": [], "postprocessing_disable_in_extras": [],
    "postprocessing_operation_order": [], "upscaling_max_images_in_cache": 5, "postprocessing_existing_caption_action":
    "Ignore", "disable_all_extensions": "none", "restore_config_state_file": "", "sd_checkpoint_hash": "",
}


@dataclass
class OptionChange:
    key: str
    before: Any
    after: Any


@dataclass
class ExtensionOptions:
    """Options registered through A1111's API, in registration order, with their ``onchange`` callbacks.

    ``settings`` is the composition root's :class:`~modules.core.settings.Settings`; values live there.
    """

    settings: Any
    _infos: dict[str, Any] = field(default_factory=dict)  # key -> shared.OptionInfo
    _onchange: dict[str, list[Callable[[], None]]] = field(default_factory=dict)

    # -- registration ----------------------------------------------------------------------------------------
    def register(self, key: str, info: Any) -> None:
        """``shared.opts.add_option``: describe ``key``; store its default when no value is stored yet."""
        self._infos[key] = info
        if not getattr(info, "do_not_save", False) and key not in self.settings.options.model_dump():
            try:
                self.settings.update_options({key: info.default}, save=False)
            except UserInputError:  # a None default of an unknown key: nothing to store, reads give the default
                pass
        onchange = getattr(info, "onchange", None)
        if onchange is not None and onchange not in self._onchange.setdefault(key, []):
            self._onchange[key].append(onchange)  # after storing the default: registering is not a change

    def register_a1111_defaults(self, option_info: Callable[..., Any]) -> None:
        """Register :data:`A1111_OPTION_DEFAULTS` keys that Easel's settings model does not declare."""
        declared = set(type(self.settings.options).model_fields)
        for key, default in A1111_OPTION_DEFAULTS.items():
            if key not in declared and key not in self._infos:
                self.register(key, option_info(default, key.replace("_", " "), section=A1111_SECTION))

    def add_onchange(self, key: str, callback: Callable[[], None]) -> None:
        self._onchange.setdefault(key, []).append(callback)

    # -- reading ---------------------------------------------------------------------------------------------
    def info(self, key: str) -> Any | None:
        return self._infos.get(key)

    def infos(self) -> dict[str, Any]:
        return dict(self._infos)

    def sections(self) -> dict[tuple[Any, ...], list[str]]:
        """Keys grouped by A1111 ``section`` (``(id, title)``; ``(None, "Other")`` when none was given)."""
        grouped: dict[tuple[Any, ...], list[str]] = {}
        for key, info in self._infos.items():
            section = info.section if isinstance(info.section, tuple) else (None, str(info.section or "Other"))
            grouped.setdefault(section, []).append(key)
        return grouped

    def default(self, key: str) -> Any:
        info = self._infos.get(key)
        if info is not None:
            return info.default
        field_info = type(self.settings.options).model_fields.get(key)
        return field_info.get_default(call_default_factory=True) if field_info is not None else None

    # -- writing ---------------------------------------------------------------------------------------------
    def check(self, changes: Mapping[str, Any], *, is_api: bool = False) -> None:
        """Refuse values of the wrong type for registered keys (422 naming the key); Easel's own keys are
        validated by the settings model itself."""
        declared = type(self.settings.options).model_fields
        for key, value in changes.items():
            info = self._infos.get(key)
            if info is None or key in declared:
                continue
            if is_api and getattr(info, "restrict_api", False):
                raise UserInputError(key, "this option cannot be changed through the API")
            expected = _type_name(info.default)
            if expected is not None and not _same_type(value, info.default):
                raise UserInputError(key, f"must be {expected} (got {type(value).__name__})")

    def changed(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[OptionChange]:
        """Run ``onchange`` callbacks of every key whose value changed; each call isolated and logged."""
        changes = [OptionChange(key, before.get(key), after.get(key)) for key in self._onchange
                   if before.get(key) != after.get(key)]
        for change in changes:
            for callback in list(self._onchange.get(change.key, ())):
                try:
                    callback()
                except Exception:
                    log.exception("onchange callback of option %s failed", change.key)
        return changes


def _type_name(default: Any) -> str | None:
    if default is None:
        return None
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (list, tuple)):
        return "a list"
    if isinstance(default, dict):
        return "an object"
    return None


def _same_type(value: Any, default: Any) -> bool:
    if value is None:
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True
