/**
 * The popup's flag table: one row per flag, with the control its type calls for (a
 * switch, the catalog's choices, or a text field that wraps to show the whole value),
 * where it was evaluated and a reset. A row changed in the popup but not applied yet
 * carries a labelled mark (see {@link CHANGED_LABEL}).
 */
import type { CatalogEntry } from "./catalog";
import type { Edits } from "./edits";
import { type FlagValue, whereLabel } from "./report";
import type { FlagRow } from "./state";

/** What a row reads and calls back. */
export interface RowContext {
  edits: Edits;
  catalog: (name: string) => CatalogEntry | undefined;
  /** An edit that changes the table (a switch, a choice, a reset): render it again. */
  changed: () => void;
  /** Typing in a text field: update the buttons only (a re-render would replace the field). */
  typing: () => void;
}

/** `document.createElement` with properties and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> & { className?: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** What the "changed" mark means, as its tooltip and accessible name. */
export const CHANGED_LABEL = "Changed here, not applied yet: press Apply";

/** The mark beside a changed flag's name: a dot with a tooltip and an accessible name. */
export function changedMark(): HTMLElement {
  const mark = el("span", { className: "changed-mark", title: CHANGED_LABEL, textContent: "•" });
  mark.setAttribute("role", "img");
  mark.setAttribute("aria-label", CHANGED_LABEL);
  return mark;
}

function markChanged(tr: HTMLTableRowElement | null): void {
  if (!tr || tr.classList.contains("changed")) return;
  tr.classList.add("changed");
  tr.querySelector("td.name .flag-name")?.after(" ", changedMark());
}

/**
 * Grow a text field to its content's height, on a Chrome without CSS `field-sizing`
 * (before 123; the manifest allows 116). Called once the field is in the document.
 */
export function fitHeight(area: HTMLTextAreaElement): void {
  if (CSS.supports("field-sizing", "content")) return;
  area.style.height = "auto";
  area.style.height = `${area.scrollHeight + area.offsetHeight - area.clientHeight}px`;
}

function valueControl(
  row: { name: string; value: FlagValue },
  desired: Record<string, FlagValue>,
  ctx: RowContext,
): HTMLElement {
  const current = Object.hasOwn(desired, row.name) ? desired[row.name] : row.value;
  if (typeof row.value === "boolean") {
    const input = el("input", { type: "checkbox", className: "switch", checked: current === true });
    input.setAttribute("aria-label", `${row.name} on/off`);
    input.addEventListener("change", () => {
      ctx.edits.set(row.name, input.checked);
      ctx.changed();
    });
    return input;
  }
  const choices = ctx.catalog(row.name)?.choices;
  if (choices) {
    // A flag declared with choices (e.g. `-> Literal["a", "b"]`): offer exactly those.
    const options = choices.includes(String(current)) ? choices : [String(current), ...choices];
    const select = el("select", {}, ...options.map((c) => el("option", { value: c, textContent: c })));
    select.value = String(current);
    select.setAttribute("aria-label", `${row.name} value`);
    select.addEventListener("change", () => {
      ctx.edits.set(row.name, select.value);
      ctx.changed();
    });
    return select;
  }
  // A text area of one line that wraps: a text input would cut a long value off.
  const area = el("textarea", { className: "text", rows: 1, value: String(current ?? "") });
  area.setAttribute("aria-label", `${row.name} value`);
  area.spellcheck = false;
  // A flag value is one line: Enter does not add a line break.
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.preventDefault();
  });
  // "input", not "change": Apply must see the value without the field losing focus first.
  // No full re-render here, which would replace the field being typed in.
  area.addEventListener("input", () => {
    ctx.edits.set(row.name, area.value);
    markChanged(area.closest("tr"));
    fitHeight(area);
    ctx.typing();
  });
  return area;
}

/** A flag name with line-break opportunities after its dots (`Class.method`). */
function breakable(name: string): (Node | string)[] {
  return name.split(/(?<=\.)/).flatMap((part, i) => (i === 0 ? [part] : [el("wbr"), part]));
}

/** One row of the popup's flag table. */
export function rowElement(row: FlagRow, desired: Record<string, FlagValue>, ctx: RowContext): HTMLTableRowElement {
  const tr = el("tr");
  tr.dataset.flag = row.name;
  const nameCell = el("td", { className: "name" }, el("span", { className: "flag-name" }, ...breakable(row.name)));
  if (ctx.edits.has(row.name)) {
    tr.classList.add("changed");
    nameCell.append(" ", changedMark());
  }
  const description = ctx.catalog(row.name)?.description;
  if (description) nameCell.title = description;
  if (row.rejected) nameCell.append(el("div", { className: "rejected" }, `override rejected: ${row.rejected}`));
  if (row.differs) {
    const detail = row.evaluations.map((e) => `${whereLabel(e.where)}=${String(e.value)}`).join(", ");
    nameCell.append(el("div", { className: "differs" }, `values differ: ${detail}`));
  }
  const valueCell = el("td", { className: "value" }, valueControl(row, desired, ctx));
  valueCell.dataset.value = String(row.value);
  // A row nobody reported: a flag just added (not applied yet), or an applied override
  // this page did not evaluate.
  const source = row.where.length ? row.source : ctx.edits.has(row.name) ? "pending" : "not used";
  const sourceCell = el("td", { className: "source" }, el("span", { className: `chip ${row.source}` }, source));
  const whereCell = el(
    "td",
    { className: "where" },
    ...row.where.map((w) => el("span", { className: `chip ${w.kind}` }, whereLabel(w))),
  );
  const actions = el("td");
  if (Object.hasOwn(desired, row.name)) {
    const reset = el("button", { className: "reset", title: "Remove this override", textContent: "×" });
    reset.addEventListener("click", () => {
      ctx.edits.set(row.name, null);
      ctx.changed();
    });
    actions.append(reset);
  }
  tr.append(nameCell, valueCell, sourceCell, whereCell, actions);
  return tr;
}

