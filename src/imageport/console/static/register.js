// imageport console: the register form's live parts. The form works without them; they show
// only the fields of the chosen image type, the bitmap file a RAW object needs for fast import,
// and that fast import and automatic configuration do not go together (the service refuses it
// with IMG.0001 at the field when sent).
"use strict";
(function () {
  const form = document.getElementById("register-form");
  if (!form) return;
  const source = document.getElementById("source");
  const fast = document.getElementById("is_quick_import");
  const config = document.getElementById("is_config");
  const conflict = document.getElementById("config-conflict");
  const bitmap = document.getElementById("bitmap-status");
  const system = document.getElementById("system-fields");
  const data = document.getElementById("data-fields");

  // Only the chosen type's fields are shown and sent (a disabled fieldset is not sent).
  function showType() {
    const chosen = form.querySelector('input[name="image_type"]:checked');
    const isData = chosen !== null && chosen.value === "data";
    system.hidden = isData;
    system.disabled = isData;
    data.hidden = !isData;
    data.disabled = !isData;
  }

  function showBitmap() {
    const option = source.selectedOptions[0];
    const wanted = option && option.dataset.bitmap && !option.dataset.bitmap.endsWith(":");
    if (!fast.checked || !wanted) {
      bitmap.textContent = "";
      return;
    }
    const text = option.dataset.hasBitmap === "yes" ? bitmap.dataset.found : bitmap.dataset.missing;
    bitmap.textContent = text.replace("{bitmap}", option.dataset.bitmap);
  }

  function showConflict() {
    conflict.hidden = !(fast.checked && config && config.checked);
  }

  form.addEventListener("change", () => { showType(); showBitmap(); showConflict(); });
  showType();
  showBitmap();
  showConflict();
})();
