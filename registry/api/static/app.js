// The clinic page: check a model file against the registry, then analyse an image with it.
// Vanilla JS, no external resources. Server text is only ever inserted with textContent: model
// names and intended uses are written by registrants.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // The model the page may use: set only by a VERIFIED answer for a model the service stores.
  let usable = null;

  const REASONS = {
    unknown:
      "This file does not match any registered model. It may have been modified or damaged, " +
      "or it was never released. Do not use it.",
    revoked: "This model has been withdrawn from use.",
    policy: "This model is registered, but it does not meet this clinic's requirements.",
    unconfirmed:
      "This model was registered very recently and is not yet confirmed. Try again in a few minutes.",
  };

  const REVOCATION_REASONS = {
    superseded: "replaced by a newer version",
    "safety-issue": "a safety issue",
    "performance-degradation": "performance degradation",
    "data-problem": "a problem with its data",
    "security-compromise": "a security compromise",
    regulatory: "a regulatory decision",
    "registered-in-error": "it was registered in error",
    other: "another reason",
  };

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function facts(rows) {
    const list = el("dl", { class: "facts" });
    for (const [label, value, mono] of rows) {
      if (value === null || value === undefined || value === "") continue;
      list.append(el("dt", { text: label }), el("dd", { class: mono ? "mono" : "", text: String(value) }));
    }
    return list;
  }

  function when(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
  }

  function percent(bps) {
    return (bps / 100).toFixed(2) + " %";
  }

  function headers(extra = {}) {
    const key = $("api-key").value.trim();
    return key ? { ...extra, "X-API-Key": key } : extra;
  }

  class ApiError extends Error {
    constructor(status, error) {
      super(error.message);
      this.status = status;
      this.code = error.code;
      this.details = error.details || {};
    }
  }

  async function call(url, options = {}) {
    let response;
    try {
      response = await fetch(url, { ...options, headers: headers(options.headers) });
    } catch (e) {
      throw new ApiError(0, { code: "network", message: "The service could not be reached. Check the connection and try again." });
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error ? body.error : { code: "http_" + response.status, message: "The service answered with status " + response.status + "." };
      throw new ApiError(response.status, error);
    }
    return body;
  }

  function show(box, ...children) {
    box.replaceChildren(...children.filter((child) => child !== null && child !== undefined));
    box.hidden = false;
  }

  // --- the clinic's policy --------------------------------------------------------------------

  const NO_MINIMUM =
    "This clinic enforces no minimum accuracy: a registered model is accepted however low its " +
    "accuracy. Check the accuracy yourself before relying on the model.";

  function noMinimumWarning(policy) {
    return policy.min_accuracy_bps > 0 ? null : el("p", { class: "warning no-minimum", text: NO_MINIMUM });
  }

  function registrants(policy) {
    const trusted = policy.trusted_registrants;
    return trusted.length ? trusted.join(", ") : "any registrar";
  }

  function evaluationsNeeded(policy) {
    const k = policy.min_attestations || 0;
    if (k === 0) return "none";
    return k + " from its " + policy.trusted_evaluators.length + " trusted evaluator(s)";
  }

  function policySentence(policy) {
    const minimum = policy.min_accuracy_bps > 0 ? "minimum accuracy " + percent(policy.min_accuracy_bps) : "no minimum accuracy";
    const who = policy.trusted_registrants.length
      ? "models from " + policy.trusted_registrants.length + " trusted registrant(s) only"
      : "models from any registrar";
    const evaluated = policy.min_attestations > 0 ? "; independent evaluations needed: " + evaluationsNeeded(policy) : "";
    return "This clinic's policy: " + minimum + "; " + who + evaluated + ".";
  }

  function policySection(policy) {
    return el(
      "section",
      { class: "policy", "aria-label": "This clinic's policy" },
      el("h3", { text: "This clinic's policy" }),
      noMinimumWarning(policy),
      facts([
        ["Minimum accuracy", policy.min_accuracy_bps > 0 ? percent(policy.min_accuracy_bps) : "none"],
        ["Accepted registrants", registrants(policy), policy.trusted_registrants.length > 0],
        ["Confirmations needed", policy.confirmations],
        ["Independent evaluations needed", evaluationsNeeded(policy)],
      ]),
    );
  }

  function showPolicy(policy) {
    show($("clinic-policy"), el("p", { class: "policy-line", text: policySentence(policy) }), noMinimumWarning(policy));
  }

  async function loadPolicy() {
    try {
      showPolicy(await call("/policy"));
    } catch (e) {
      $("clinic-policy").hidden = true; // a service that wants a key: each verdict states it
    }
  }

  // --- service status ------------------------------------------------------------------------

  async function checkHealth() {
    const status = $("service-status");
    try {
      const health = await call("/health");
      status.dataset.state = "ok";
      status.textContent = "Connected to the registry (chain " + health.chain_id + ", block " + health.latest_block + ").";
    } catch (e) {
      status.dataset.state = "down";
      status.textContent = "The registry cannot be reached: no model can be checked or used right now.";
    }
  }

  // --- step 1: verify ------------------------------------------------------------------------

  function trainingData(model) {
    const name = model.dataset || "a dataset this service cannot name";
    if (model.stand_in === true) {
      return /stand-in|not medical data/i.test(name) ? name : name + " (stand-in data, not medical data)";
    }
    if (model.stand_in === false) return name + " (not a stand-in, says its model card)";
    return name + " (not known whether it is medical data)";
  }

  function measuredOn(model) {
    if (!model.dataset) return " on the held-out test set named below";
    const size = model.test_set_size ? " (" + model.test_set_size + " images)" : "";
    return " on the held-out test split of " + model.dataset + size;
  }

  // A model trained on stand-in data must never look like a clinical one; one whose data this
  // service cannot tell is not presented as validated either.
  function dataWarning(model) {
    if (model.stand_in === true) {
      return el(
        "p",
        { class: "stand-in", role: "alert" },
        el("strong", { text: "Demonstration model, not for patients. " }),
        "It was trained and tested on stand-in data, not medical data: its accuracy says nothing about any clinical task.",
      );
    }
    if (model.stand_in === null) {
      const why = model.card_held
        ? "its model card does not say whether it was trained on medical data"
        : "this service does not hold its model card";
      return el("p", { class: "warning data-unknown", text: "What this model was trained on cannot be confirmed here: " + why + ". Treat it as not clinically validated." });
    }
    return null;
  }

  function modelFacts(model) {
    const unknown = model.card_held ? "not stated in its model card" : "not known (this service does not hold the model card)";
    return facts([
      ["Model name", model.name || unknown],
      ["Intended use", model.intended_use || unknown],
      ["Training data", trainingData(model)],
      ["Classes", model.class_names ? model.class_names.join(", ") : null],
    ]);
  }

  function recordFacts(verdict) {
    const r = verdict.record;
    const rows = [["Model fingerprint", verdict.digest, true]];
    if (r) {
      rows.push(
        ["Registered by", r.registrant, true],
        ["Registered on", when(r.registered_at)],
        ["Accuracy", percent(r.accuracy_bps) + measuredOn(verdict.model)],
        ["Test set", r.test_set_digest, true],
        ["Model card", r.card_digest, true],
        ["Previous version", r.parent || "none (first version)", Boolean(r.parent)],
        ["Registration block", r.registered_block],
      );
      if (r.revocation) {
        const v = r.revocation;
        rows.push(
          ["Withdrawn on", when(v.revoked_at)],
          ["Reason", REVOCATION_REASONS[v.reason] || v.reason],
          ["Use instead", v.replacement || "no replacement named", Boolean(v.replacement)],
        );
      }
    }
    const place = verdict.batch; // anchored with others under one Merkle root
    if (place) {
      rows.push(["Anchored in batch", place.root, true], ["Position in batch", place.position]);
      const batch = place.batch;
      if (batch) {
        rows.push(["Models in batch", batch.count], ["Batch manifest", batch.manifest_digest, true]);
        if (batch.revoked) rows.push(["Batch withdrawn", REVOCATION_REASONS[batch.revocation_reason] || batch.revocation_reason]);
      }
    }
    rows.push(["Chain", verdict.chain_id], ["Registry contract", verdict.contract, true], ["Checked at block", verdict.checked_block]);
    return facts(rows);
  }

  function renderVerdict(verdict) {
    const box = $("verify-result");
    box.classList.remove("error");
    box.dataset.verified = String(verdict.verified);
    let explain;
    if (verdict.verified) {
      explain = "This file is exactly the registered model, and it has not been withdrawn.";
    } else {
      explain = REASONS[verdict.reason] || verdict.detail;
      if (verdict.reason === "policy" && verdict.policy_failures.length) {
        explain += " " + verdict.policy_failures.join("; ") + ".";
      }
    }
    const registered = Boolean(verdict.record);
    box.dataset.standIn = String(verdict.model.stand_in === true);
    show(
      box,
      el("p", { class: "verdict", text: verdict.verified ? "VERIFIED" : "NOT VERIFIED" }),
      registered ? dataWarning(verdict.model) : null,
      el("p", { class: "explain", text: explain }),
      registered ? el("h3", { text: "The model" }) : null,
      registered ? modelFacts(verdict.model) : null,
      el("h3", { text: "Registry record" }),
      recordFacts(verdict),
      policySection(verdict.policy),
    );
    showPolicy(verdict.policy);
  }

  // Evaluators' own measurements of the model, from its record (GET /models/{digest}).
  function attestationItem(a) {
    const testSet =
      a.test_set === "anchored"
        ? "on the anchored test set (the one the registered accuracy was measured on)"
        : "on the evaluator's own test set " + a.test_set_digest;
    const item = el(
      "li",
      { class: a.withdrawn ? "attestation withdrawn" : "attestation", "data-withdrawn": String(a.withdrawn) },
      el("span", { class: "mono", text: a.evaluator }),
      " measured " + percent(a.accuracy_bps) + " " + testSet + ", on " + when(a.attested_at),
    );
    if (a.report_digest) item.append(el("span", { class: "mono", text: " (report " + a.report_digest + ")" }));
    if (a.withdrawn) item.append(el("strong", { text: " WITHDRAWN" + (a.withdrawn_at ? " on " + when(a.withdrawn_at) : "") }));
    return item;
  }

  async function showAttestations(digest) {
    const box = $("verify-result");
    let detail;
    try {
      detail = await call("/models/" + encodeURIComponent(digest));
    } catch (error) {
      detail = null;
    }
    if (box.dataset.digest !== digest) return; // another file was checked meanwhile
    const section = el("section", { class: "attestations", "aria-label": "Independent evaluations" }, el("h3", { text: "Independent evaluations" }));
    if (detail === null) {
      section.append(el("p", { text: "The evaluations of this model could not be loaded." }));
    } else if (detail.attestations.length === 0) {
      section.append(el("p", { text: "No evaluator has attested this model's accuracy." }));
    } else {
      section.append(el("ul", { class: "attestation-list" }, ...detail.attestations.map(attestationItem)));
    }
    box.append(section);
  }

  function renderVerifyError(error) {
    const box = $("verify-result");
    box.dataset.verified = "false";
    box.dataset.standIn = "";
    if (error.status === 422 || error.status === 400 || error.status === 413) {
      box.classList.remove("error");
      show(
        box,
        el("p", { class: "verdict", text: "NOT VERIFIED" }),
        el("p", { class: "explain", text: "This is not a model file this system can check. It was not opened." }),
        el("p", { class: "mono", text: error.message }),
      );
    } else {
      box.classList.add("error");
      show(
        box,
        el("p", { class: "verdict", text: "CANNOT CHECK RIGHT NOW" }),
        el("p", { class: "explain", text: "Nothing can be verified at the moment, so the model must not be used." }),
        el("p", { text: error.message }),
      );
    }
  }

  function setPredictable(model, hint) {
    usable = model;
    $("predict-fields").disabled = model === null;
    $("predict-hint").textContent = hint;
  }

  function resetPrediction() {
    for (const id of ["predict-result", "provenance"]) {
      $(id).hidden = true;
      $(id).replaceChildren();
    }
  }

  async function verifyFile(file) {
    resetPrediction();
    setPredictable(null, "Available once a model file has been checked and found verified.");
    const box = $("verify-result");
    box.dataset.verified = "";
    box.dataset.digest = "";
    box.dataset.standIn = "";
    box.classList.remove("error");
    show(box, el("p", { text: "Checking " + file.name + " against the registry…" }));
    try {
      // store=true: a verified file is kept (an import, read rights only), so step 2 can use
      // it at once; a file that is not verified is never kept.
      const verdict = await call("/verify?store=true", {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream" },
        body: file,
      });
      renderVerdict(verdict);
      box.dataset.digest = verdict.digest;
      if (verdict.record) showAttestations(verdict.digest);
      if (verdict.verified && verdict.stored) {
        const demo = verdict.model.stand_in === true ? " demonstration model (not for patients)" : " model";
        setPredictable(verdict, "Using the verified" + demo + " " + verdict.digest.slice(0, 19) + "…; choose an image to analyse.");
      } else if (verdict.verified) {
        setPredictable(
          null,
          "This model is verified, but this service could not keep a copy of it, so it cannot analyse " +
            "images with it. Check the model file again, or ask your administrator.",
        );
      }
    } catch (error) {
      renderVerifyError(error);
    }
  }

  // --- step 2: predict -----------------------------------------------------------------------

  function renderPrediction(answer, verdict) {
    const first = answer.predictions[0];
    const bars = el("ol", { class: "bars", "aria-label": "Probability of each class" });
    first.probabilities.forEach((p, i) => {
      const pct = (p * 100).toFixed(1) + " %";
      const fill = el("span");
      fill.style.width = Math.max(0, Math.min(100, p * 100)) + "%";
      bars.append(
        el(
          "li",
          {},
          el("span", { text: answer.class_names[i] }),
          el("span", { class: "bar", role: "img", "aria-label": answer.class_names[i] + " " + pct }, fill),
          el("span", { class: "pct", text: pct }),
        ),
      );
    });
    const model = verdict.model;
    show(
      $("predict-result"),
      el("p", { class: "answer" }, "Result: ", el("strong", { text: first.label })),
      model.stand_in === true
        ? el("p", { class: "stand-in", text: "Demonstration model trained on stand-in data: this is not a medical finding." })
        : null,
      bars,
    );

    const p = answer.provenance;
    show(
      $("provenance"),
      el("h3", { text: "Which model answered" }),
      facts([
        ["Model fingerprint", p.model_digest, true],
        ["Registered by", p.registrant, true],
        ["Registration transaction", p.registration_tx, true],
        ["Registration block", p.registration_block],
        ["Still valid at block", p.validity_confirmed_at_block],
        ["Model name", model.name],
        ["Accuracy", percent(p.accuracy_bps) + measuredOn(model)],
        ["Test set", p.test_set_digest, true],
        ["Model card", p.card_digest, true],
        ["Chain", p.chain_id],
        ["Registry contract", p.contract, true],
      ]),
    );
  }

  async function predict() {
    resetPrediction();
    const box = $("predict-result");
    box.classList.remove("error");
    const file = $("image-input").files[0];
    if (!usable) return;
    if (!file) {
      show(box, el("p", { text: "Choose an image (PNG or JPEG) first." }));
      return;
    }
    const form = new FormData();
    form.append("images", file, file.name);
    const button = $("predict-button");
    button.disabled = true;
    show(box, el("p", { text: "Analysing…" }));
    try {
      const verdict = usable; // the model this answer is about, whatever is chosen meanwhile
      renderPrediction(await call("/models/" + encodeURIComponent(verdict.digest) + "/predict", { method: "POST", body: form }), verdict);
    } catch (error) {
      box.classList.add("error");
      if (error.status === 403) {
        setPredictable(null, "This model may no longer be used. Check the model file again.");
        show(
          box,
          el("p", { class: "verdict", text: "REFUSED" }),
          el("p", { text: "The registry no longer allows this model (" + (error.details.reason || "not verified") + "). No analysis was made." }),
          el("p", { class: "mono", text: error.message }),
        );
      } else {
        show(box, el("p", { class: "verdict", text: "NO RESULT" }), el("p", { text: error.message }));
      }
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("checkpoint-input").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) verifyFile(file);
    });
    $("predict-button").addEventListener("click", predict);
    checkHealth();
    loadPolicy();
  });
})();
