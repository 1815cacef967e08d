#!/usr/bin/python3
"""Checks that the Grafana dashboards and Prometheus alert rules in ops/
only use metrics that kvc-peer really exposes, and that they are well formed.

Known metric names come from real exposition text (the /metrics and
/federate output of running peers, --exposition) and from the metric
registrations in the C source (--source: kvc_metrics_counter/gauge/histogram
calls, whose series may only appear after traffic). A histogram family F is
known as F_bucket, F_sum and F_count, as its series are named; the bare F is
not a series and is refused.

Every PromQL expression (dashboard targets, template-variable queries, alert
rules) is tokenised: strings, label matchers {...}, ranges [...], numbers and
durations, Grafana variables, function and aggregation names (an identifier
followed by "("), keywords and the label lists after by/without/on/ignoring/
group_left/group_right are dropped; what remains are metric names. A
{__name__="..."} matcher names a metric too.

Structure checked as well: dashboards are JSON objects with a title, a
unique uid, schemaVersion >= 36, a Prometheus datasource variable (or
${DS_...} input) that every panel and target uses, unique panel ids, known
panel types, gridPos inside 24 columns, targets with an expr and unique
refIds, and only defined template variables in expressions. Every alert rule
has a for, a severity label and summary/description annotations. With
--promtool, every dashboard expression (variables replaced) must also parse
under `promtool check rules`. With --query, every expression is also run on
a live Prometheus that scrapes real peers: none may be refused, and every
dashboard expression must return data (but those reading only metrics named
with --may-be-empty).

Standard library only. Exit status 0 when everything holds, 1 with one line
per problem otherwise.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

# Series Prometheus itself adds to every target: allowed in alert rules and
# dashboards although no kvc-peer exposes them.
PROMETHEUS_SERIES = {"up"}

# Grafana's global variables usable in expressions.
GRAFANA_GLOBALS = {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s",
                   "__range_ms", "__dashboard", "__from", "__to", "__org", "__user"}

PANEL_TYPES = {"timeseries", "stat", "table", "heatmap", "row", "text", "gauge", "bargauge"}

KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "start", "end",
            "by", "without", "on", "ignoring", "group_left", "group_right"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}

IDENT_START = re.compile(r"[A-Za-z_:]")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|\d*\.?\d+(?:[eE][+-]?\d+)?)(?:[A-Za-z_][A-Za-z0-9_]*)?")
NAME_MATCHER = re.compile(r"""__name__\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)""")
VAR_REF = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]")


class PromQLError(Exception):
    pass


def _skip_string(s, i):
    """Index just past the string literal starting at s[i]."""
    q = s[i]
    i += 1
    while i < len(s):
        if s[i] == "\\" and q != "`":
            i += 2
            continue
        if s[i] == q:
            return i + 1
        i += 1
    raise PromQLError("unterminated string")


def _skip_balanced(s, i, open_c, close_c):
    """Index just past the bracket group opening at s[i], strings respected."""
    depth = 0
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PromQLError("unbalanced %s%s" % (open_c, close_c))


def _unquote(lit):
    body = lit[1:-1]
    if lit[0] == "`":
        return body
    return re.sub(r"\\(.)", r"\1", body)


def promql_names(expr):
    """(names, name_regexes): the metric names an expression reads, and the
    regexes of its {__name__=~"..."} matchers."""
    names, regexes = [], []
    s = expr
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
        elif c == "#":
            j = s.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'`":
            i = _skip_string(s, i)
        elif c == "{":
            j = _skip_balanced(s, i, "{", "}")
            for op, lit in NAME_MATCHER.findall(s[i:j]):
                if op == "=":
                    names.append(_unquote(lit))
                elif op == "=~":
                    regexes.append(_unquote(lit))
            i = j
        elif c == "[":
            i = _skip_balanced(s, i, "[", "]")
        elif c == "$":
            m = VAR_REF.match(s, i)
            if not m:
                raise PromQLError("stray $ at %d" % i)
            i = m.end()
        elif c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit()):
            i = NUMBER.match(s, i).end()
        elif IDENT_START.match(c):
            m = IDENT.match(s, i)
            word = m.group(0)
            i = m.end()
            j = i
            while j < n and s[j].isspace():
                j += 1
            followed_by_paren = j < n and s[j] == "("
            nxt = IDENT.match(s, j)
            followed_by_grouping = bool(nxt) and nxt.group(0).lower() in ("by", "without")
            if word.lower() in GROUPING:
                if followed_by_paren:  # a label list, not a call
                    i = _skip_balanced(s, j, "(", ")")
            elif word.lower() in KEYWORDS or followed_by_paren or followed_by_grouping:
                pass  # keyword, function, or aggregation (sum by (l) (...))
            else:
                names.append(word)
        else:
            i += 1  # operators, parentheses, commas
    return names, regexes


def variable_query_expr(query):
    """The PromQL inside a Grafana Prometheus variable query, or None."""
    q = query.strip()
    m = re.match(r"^(label_values|query_result)\s*\((.*)\)\s*$", q, re.S)
    if not m:
        if re.match(r"^(label_names|metrics)\s*\(", q):
            return None
        return q  # a plain expression
    fn, args = m.group(1), m.group(2)
    if fn == "query_result":
        return args
    # label_values(label) or label_values(selector, label): split at the last
    # top-level comma.
    depth, cut = 0, -1
    k = 0
    while k < len(args):
        ch = args[k]
        if ch in "\"'`":
            k = _skip_string(args, k)
            continue
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == "," and depth == 0:
            cut = k
        k += 1
    return args[:cut] if cut >= 0 else None


# ------------------------------------------------------------ known names

def names_from_exposition(path):
    """Sample names in Prometheus text exposition (HELP/TYPE lines skipped)."""
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            m = IDENT.match(line)
            if m:
                out.add(m.group(0))
    return out


REGISTRATION = re.compile(
    r"\bkvc_metrics_(counter|gauge|histogram)(?:_fn)?\s*\(\s*[^,()]+,\s*\"([A-Za-z_:][A-Za-z0-9_:]*)\"")


def names_from_source(path):
    """Series names of the metrics registered in a C file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = set()
    for kind, name in REGISTRATION.findall(text):
        if kind == "histogram":
            out.update({name + "_bucket", name + "_sum", name + "_count"})
        else:
            out.add(name)
    return out


# ------------------------------------------------------------ dashboards

def _walk_panels(panels):
    for p in panels or []:
        yield p
        yield from _walk_panels(p.get("panels"))


def _ds_ok(ds, ds_names):
    """A panel/target datasource that refers to the dashboard's variable."""
    if ds is None:
        return False
    uid = ds.get("uid") if isinstance(ds, dict) else ds
    if not isinstance(uid, str):
        return False
    m = re.fullmatch(r"\$\{?([A-Za-z0-9_]+)\}?", uid)
    return bool(m) and m.group(1) in ds_names


def check_dashboard(path, uids):
    """(problems, [(where, expr)]) of one dashboard file."""
    probs, exprs = [], []
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        return ["%s: not valid JSON: %s" % (path, e)], []
    if not isinstance(d, dict):
        return ["%s: not a JSON object" % path], []
    base = os.path.basename(path)
    if not d.get("title"):
        probs.append("%s: no title" % base)
    uid = d.get("uid")
    if not uid:
        probs.append("%s: no uid" % base)
    elif uid in uids:
        probs.append("%s: uid %r also used by %s" % (base, uid, uids[uid]))
    else:
        uids[uid] = base
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        probs.append("%s: schemaVersion %r, want >= 36" % (base, d.get("schemaVersion")))

    variables = d.get("templating", {}).get("list", [])
    var_names = {v.get("name") for v in variables}
    ds_names = {v["name"] for v in variables
                if v.get("type") == "datasource" and v.get("query") == "prometheus"}
    ds_names |= {i["name"] for i in d.get("__inputs", [])
                 if i.get("type") == "datasource" and i.get("pluginId") == "prometheus"}
    if not ds_names:
        probs.append("%s: no Prometheus datasource variable or input" % base)
    var_names |= ds_names

    for v in variables:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        if not q:
            probs.append("%s: variable %s has no query" % (base, v.get("name")))
            continue
        if not _ds_ok(v.get("datasource"), ds_names):
            probs.append("%s: variable %s does not use the datasource variable" % (base, v.get("name")))
        e = variable_query_expr(q)
        if e is not None:
            exprs.append(("%s: variable %s" % (base, v.get("name")), e))

    ids = set()
    for p in _walk_panels(d.get("panels")):
        title = p.get("title", "?")
        where = "%s: panel %r" % (base, title)
        ptype = p.get("type")
        if ptype not in PANEL_TYPES:
            probs.append("%s: unknown type %r" % (where, ptype))
        pid = p.get("id")
        if not isinstance(pid, int) or pid in ids:
            probs.append("%s: missing or duplicate id %r" % (where, pid))
        ids.add(pid)
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")) or g["x"] + g["w"] > 24:
            probs.append("%s: bad gridPos %r" % (where, g))
        if ptype in ("row", "text"):
            continue
        if not _ds_ok(p.get("datasource"), ds_names):
            probs.append("%s: datasource is not the dashboard's variable" % where)
        targets = p.get("targets") or []
        if not targets:
            probs.append("%s: no targets" % where)
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refs:
                probs.append("%s: missing or duplicate refId %r" % (where, ref))
            refs.add(ref)
            if "datasource" in t and not _ds_ok(t["datasource"], ds_names):
                probs.append("%s: target %s datasource is not the dashboard's variable" % (where, ref))
            e = t.get("expr")
            if not isinstance(e, str) or not e.strip():
                probs.append("%s: target %s has no expr" % (where, ref))
                continue
            exprs.append(("%s target %s" % (where, ref), e))

    for where, e in exprs:
        for m in VAR_REF.finditer(e):
            name = m.group(1) or m.group(2) or m.group(3)
            if name not in var_names and name not in GRAFANA_GLOBALS:
                probs.append("%s: undefined variable $%s" % (where, name))
    return probs, exprs


# ------------------------------------------------------------ alert rules

def rule_blocks(path):
    """The rules of a Prometheus rule file as (name, {key: text}) where key is
    alert, record, expr, for, severity, summary or description. A small
    reader for the block-style YAML rule files use (no PyYAML needed): scalar
    values inline, quoted, or as |/> block scalars."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    rules, cur = [], None
    i = 0
    key_re = re.compile(r"^(\s*)(-\s+)?([A-Za-z_]+):\s*(.*?)\s*$")
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = key_re.match(line)
        if not m:
            continue
        indent = len(m.group(1)) + (len(m.group(2)) if m.group(2) else 0)
        key, val = m.group(3), m.group(4)
        if val[:1] in ("|", ">"):
            block = []
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            val = ("\n" if val[0] == "|" else " ").join(x for x in block if x)
        elif val[:1] in ("'", '"'):
            val = val[1:-1]
        if key in ("alert", "record") and m.group(2):
            cur = {key: val}
            rules.append(cur)
        elif cur is not None and key in ("expr", "for", "severity", "summary", "description"):
            cur[key] = val
    return rules


def check_rules(path):
    probs, exprs = [], []
    base = os.path.basename(path)
    rules = rule_blocks(path)
    if not rules:
        probs.append("%s: no rules found" % base)
    for r in rules:
        name = r.get("alert") or r.get("record")
        where = "%s: %s" % (base, name)
        if not r.get("expr"):
            probs.append("%s: no expr" % where)
            continue
        exprs.append((where, r["expr"]))
        if "alert" in r:
            for k in ("for", "severity", "summary", "description"):
                if not r.get(k):
                    probs.append("%s: no %s" % (where, k))
            if r.get("severity") not in (None, "critical", "warning", "info"):
                probs.append("%s: severity %r" % (where, r.get("severity")))
    return probs, exprs


# ------------------------------------------------------------ promtool

def _grafana_to_promql(e):
    e = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", e)
    return VAR_REF.sub("x", e)


def promtool_parse(promtool, exprs):
    """Problems of the expressions promtool cannot parse."""
    def run(items):
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write("groups:\n  - name: dashboards\n    rules:\n")
            for k, (_, e) in enumerate(items):
                f.write("      - record: kvc_check:expr%d\n        expr: %s\n"
                        % (k, json.dumps(_grafana_to_promql(e))))
            name = f.name
        try:
            r = subprocess.run([promtool, "check", "rules", name], capture_output=True, text=True)
            return r.returncode == 0, (r.stdout + r.stderr).strip()
        finally:
            os.unlink(name)

    ok, _ = run(exprs)
    if ok:
        return []
    probs = []
    for where, e in exprs:  # find the culprits one by one
        ok, out = run([(where, e)])
        if not ok:
            probs.append("%s: promtool cannot parse %r: %s" % (where, e, out.splitlines()[-1]))
    return probs or ["promtool rejects the dashboard expressions as a whole"]


SELF_TEST = [
    ('sum by (le, model) (rate(x_bucket{a="b",le=~"1.*"}[5m]))', ["x_bucket"]),
    ('sum(rate(a[5m])) by (site) / on (site) group_left(region) b offset 1h30m', ["a", "b"]),
    ('histogram_quantile(0.99, sum without (instance) (rate(c[$__rate_interval])))', ["c"]),
    ('count(max by (site) (kvc_site_up) == 0) or vector(0)', ["kvc_site_up"]),
    ('{__name__="foo", job="x"}', ["foo"]),
    ('label_replace(up, "dst", "$1", "src", "(.*)")', ["up"]),
    ('time() - d{site="$site",x=~"${x:regex}"}', ["d"]),
    ('x > bool 1e3 and y unless z OR w', ["x", "y", "z", "w"]),
    ('a @ start() + a2 @ 1609746000', ["a", "a2"]),
    ('topk(5, e) # a comment: not_a_metric', ["e"]),
    ('sum by(le)(f) * on() group_left g', ["f", "g"]),
    ('-h * 0x1F + .5 + Inf + NaN - 2.5e-3', ["h"]),
    ('sum(i) without(site)', ["i"]),
    ('max_over_time(j[1h:5m]) / ignoring(code) k', ["j", "k"]),
    ('count_values("value", l) > 1', ["l"]),
    ('sum(m{__name__!="n", site="by"}) by (sum)', ["m"]),
]


def self_test():
    """Checks the tokeniser on tricky expressions; returns the failures."""
    fails = []
    for expr, want in SELF_TEST:
        got, _ = promql_names(expr)
        if got != want:
            fails.append("self-test: %r gave %r, want %r" % (expr, got, want))
    for q, want in (('label_values(kvc_site_up{a="b,c"}, site)', 'kvc_site_up{a="b,c"}'),
                    ("label_values(site)", None), ("label_names()", None),
                    ("query_result(sum(x))", "sum(x)")):
        if variable_query_expr(q) != want:
            fails.append("self-test: variable query %r gave %r, want %r"
                         % (q, variable_query_expr(q), want))
    _, rx = promql_names('{__name__=~"kvc_.*"}')
    if rx != ["kvc_.*"]:
        fails.append("self-test: __name__=~ regex gave %r" % rx)
    return fails


def _query(url, expr):
    """(result list, error text) of an instant query to Prometheus at url."""
    import urllib.error
    import urllib.parse
    import urllib.request
    q = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(q, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            return None, json.load(e).get("error", str(e))
        except ValueError:
            return None, str(e)
    except (OSError, ValueError) as e:
        return None, str(e)
    if body.get("status") != "success":
        return None, body.get("error", "status %r" % body.get("status"))
    return body["data"]["result"], None


def query_check(url, values, may_be_empty, dash_exprs, rule_exprs):
    """Problems of running the expressions on a live Prometheus: any error,
    and a dashboard expression with no result unless every metric it reads
    may be empty."""
    def subst(e):
        e = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "1m", e)
        def one(m):
            name = m.group(1) or m.group(2) or m.group(3)
            return values.get(name, ".*")
        return VAR_REF.sub(one, e)

    probs = []
    for where, e in dash_exprs + rule_exprs:
        res, err = _query(url, subst(e))
        if err:
            probs.append("%s: Prometheus refuses %r: %s" % (where, subst(e), err))
        elif not res and (where, e) in dash_exprs:
            names, _ = promql_names(e)
            if not set(names) <= may_be_empty:
                probs.append("%s: no data from Prometheus for %r" % (where, subst(e)))
    return probs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exposition", action="append", default=[],
                    help="Prometheus text from a running peer (/metrics, /federate)")
    ap.add_argument("--source", action="append", default=[],
                    help="C file whose kvc_metrics_* registrations are known names")
    ap.add_argument("--rules", action="append", default=[], help="Prometheus rule file")
    ap.add_argument("--promtool", help="promtool binary: also parse every dashboard expression")
    ap.add_argument("--query", metavar="URL",
                    help="a Prometheus scraping live peers: run every expression there too")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="value of a dashboard variable for --query (default .*)")
    ap.add_argument("--may-be-empty", action="append", default=[], metavar="METRIC",
                    help="for --query: a metric that may have no series yet")
    ap.add_argument("dashboards", nargs="*")
    a = ap.parse_args()

    known, problems = set(PROMETHEUS_SERIES), self_test()
    for p in a.exposition:
        got = names_from_exposition(p)
        if not got:
            problems.append("%s: no samples" % p)
        known |= got
    for p in a.source:
        got = names_from_source(p)
        if not got:
            problems.append("%s: no kvc_metrics_* registrations found" % p)
        known |= got

    exprs, uids = [], {}
    for p in a.dashboards:
        probs, ex = check_dashboard(p, uids)
        problems += probs
        exprs += ex
    n_dash = len(exprs)
    for p in a.rules:
        probs, ex = check_rules(p)
        problems += probs
        exprs += ex

    used = set()
    for where, e in exprs:
        try:
            names, regexes = promql_names(e)
        except PromQLError as err:
            problems.append("%s: cannot tokenise %r: %s" % (where, e, err))
            continue
        if not names and not regexes:
            problems.append("%s: names no metric: %r" % (where, e))
        for name in names:
            used.add(name)
            if name not in known:
                problems.append("%s: unknown metric %s" % (where, name))
        for rx in regexes:
            try:
                hit = [k for k in known if re.fullmatch(rx, k)]
            except re.error as err:
                problems.append("%s: bad __name__ regex %r: %s" % (where, rx, err))
                continue
            if not hit:
                problems.append("%s: __name__=~%r matches no known metric" % (where, rx))

    if a.promtool and n_dash:
        problems += promtool_parse(a.promtool, exprs[:n_dash])
    if a.query:
        values = dict(v.split("=", 1) for v in a.var)
        problems += query_check(a.query, values, set(a.may_be_empty), exprs[:n_dash], exprs[n_dash:])

    if problems:
        problems = list(dict.fromkeys(problems))  # once each, in order
        for p in problems:
            print("check_dashboards: " + p, file=sys.stderr)
        unknown = sorted({p.rsplit(" ", 1)[1] for p in problems if ": unknown metric " in p})
        if unknown:
            print("check_dashboards: unknown metric names: " + ", ".join(unknown), file=sys.stderr)
        return 1
    print("check_dashboards: %d expressions in %d dashboards and %d rule files use %d metrics, "
          "all of them known (%d known names)"
          % (len(exprs), len(a.dashboards), len(a.rules), len(used), len(known)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
