//! The TensorRT test double (`cpp/trt_double/include/`) held to the real TensorRT 10.x headers
//! vendored in `third_party/`: every class, function and enumerator the double declares must
//! exist in the real header of its shape, be marked deprecated exactly when the real one is, and
//! be `noexcept` exactly when the real one is. The layer is compiled against the double with
//! `-Werror=deprecated-declarations`, so a mark the double lacks is a deprecated call the double
//! lets through (as it did for `setInt8Calibrator` and `BuilderFlag::kFP16`), and a missing
//! `noexcept` lets tests throw where real TensorRT cannot (as `IParser::parse` did).
//!
//! Both header sets go through the C preprocessor (so `TRT_DEPRECATED`, `TRT_DEPRECATED_ENUM` and
//! the double's shape conditionals expand as the compiler sees them), then through a small
//! declaration scanner below. No feature needed: only `c++ -E`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the scanner records about one declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks {
    deprecated: bool,
    /// Functions only (false for classes and enumerators).
    noexcept: bool,
}

/// `class C`, `C::f/arity` (free functions: `::f/arity`) or `E::kVALUE`.
type Key = String;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Preprocesses a translation unit that includes the TensorRT builder and ONNX-parser headers
/// from `include` (first on the path; the double's directory second, for `cuda_runtime_api.h`:
/// the real headers need only its type names) and returns the text that came from files under
/// `keep`, skipping `skip`.
fn preprocess(include: &Path, defines: &[&str], keep: &Path, skip: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let tu = dir.path().join("api.cc");
    std::fs::write(&tu, "#include <NvInfer.h>\n#include <NvOnnxParser.h>\n").expect("write");
    let double = root().join("cpp/trt_double/include");
    let out = Command::new("c++")
        .args(["-E", "-std=c++17"])
        .args(defines)
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(&double)
        .arg(&tu)
        .output()
        .expect("run c++ -E (scripts/setup.sh installs g++)");
    assert!(
        out.status.success(),
        "c++ -E on {}: {}",
        include.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let keep = keep.canonicalize().expect("header dir");
    let mut text = String::new();
    let mut kept = false;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            // Line marker: `# LINE "FILE" FLAGS`.
            let file = rest.split('"').nth(1).unwrap_or("");
            let path = Path::new(file);
            kept = path
                .canonicalize()
                .is_ok_and(|p| p.starts_with(&keep) && !skip.iter().any(|s| p.ends_with(s)));
            continue;
        }
        if kept {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// `::`
    Scope,
    Lit,
}

fn tokenize(src: &str) -> Vec<Tok> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c.is_alphabetic() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(b[s..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '.' || b[i] == '\'') {
                i += 1;
            }
            out.push(Tok::Lit);
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Lit);
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(Tok::Scope);
            i += 2;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

fn is(t: &Tok, s: &str) -> bool {
    matches!(t, Tok::Ident(x) if x == s)
}

/// Removes `[[...]]`, `__attribute__((...))` and `alignas(...)` from a statement; true when one
/// of them said `deprecated`.
fn strip_attributes(stmt: &[Tok]) -> (Vec<Tok>, bool) {
    let mut out = Vec::new();
    let mut deprecated = false;
    let mut i = 0;
    while i < stmt.len() {
        let double_bracket =
            stmt[i] == Tok::Punct('[') && stmt.get(i + 1) == Some(&Tok::Punct('['));
        let gnu = is(&stmt[i], "__attribute__") || is(&stmt[i], "alignas");
        if double_bracket || gnu {
            let (open, close) = if double_bracket {
                ('[', ']')
            } else {
                ('(', ')')
            };
            let mut depth = 0;
            let mut j = if double_bracket { i } else { i + 1 };
            loop {
                match stmt.get(j) {
                    Some(Tok::Punct(c)) if *c == open => depth += 1,
                    Some(Tok::Punct(c)) if *c == close => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Some(t) if is(t, "deprecated") => deprecated = true,
                    None => break,
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
        } else {
            out.push(stmt[i].clone());
            i += 1;
        }
    }
    (out, deprecated)
}

/// The index of the `)` matching the `(` at `open`.
fn close_paren(t: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (k, tok) in t.iter().enumerate().skip(open) {
        match tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

#[derive(Debug)]
enum Scope {
    /// A namespace, `extern "C"` or anything else that is transparent for names.
    Open,
    Class(String),
    /// A function body or an initializer: skipped.
    Body,
}

/// Every declaration of the preprocessed `src`, with its marks. A key seen twice with other
/// marks (overloads of one arity, one class name in two namespaces) is recorded as `None`.
fn declarations(src: &str) -> BTreeMap<Key, Option<Marks>> {
    let toks = tokenize(src);
    let mut decls: BTreeMap<Key, Option<Marks>> = BTreeMap::new();
    let mut record = |key: Key, m: Marks| {
        decls
            .entry(key)
            .and_modify(|old| {
                if *old != Some(m) {
                    *old = None;
                }
            })
            .or_insert(Some(m));
    };
    let mut scopes: Vec<Scope> = Vec::new();
    let mut stmt: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        i += 1;
        let in_body = matches!(scopes.last(), Some(Scope::Body));
        match t {
            Tok::Punct('{') if in_body => scopes.push(Scope::Body),
            Tok::Punct('}') if in_body => {
                scopes.pop();
            }
            _ if in_body => {}
            Tok::Punct(':')
                if stmt.len() == 1
                    && ["public", "protected", "private"]
                        .iter()
                        .any(|a| is(&stmt[0], a)) =>
            {
                stmt.clear();
            }
            Tok::Punct(';') => {
                declare(&stmt, &scopes, &mut record);
                stmt.clear();
            }
            Tok::Punct('}') => {
                scopes.pop();
                stmt.clear();
            }
            Tok::Punct('{') => {
                let (clean, deprecated) = strip_attributes(&stmt);
                let class = clean.iter().position(|x| {
                    is(x, "class") || is(x, "struct") || is(x, "union") || is(x, "enum")
                });
                let is_enum = clean.iter().any(|x| is(x, "enum"));
                if clean.iter().any(|x| is(x, "namespace"))
                    || clean.iter().all(|x| is(x, "extern") || *x == Tok::Lit)
                {
                    scopes.push(Scope::Open);
                } else if is_enum {
                    // `enum class NAME : TYPE {`: enumerators up to the matching `}`.
                    let name = clean
                        .iter()
                        .skip(class.unwrap_or(0))
                        .find_map(|x| match x {
                            Tok::Ident(s) if s != "enum" && s != "class" && s != "struct" => {
                                Some(s.clone())
                            }
                            _ => None,
                        })
                        .unwrap_or_default();
                    let mut item: Vec<Tok> = Vec::new();
                    let mut depth = 0;
                    while i < toks.len() {
                        let e = &toks[i];
                        i += 1;
                        match e {
                            Tok::Punct('(') => depth += 1,
                            Tok::Punct(')') => depth -= 1,
                            _ => {}
                        }
                        let end = *e == Tok::Punct('}');
                        if end || (*e == Tok::Punct(',') && depth == 0) {
                            let (v, dep) = strip_attributes(&item);
                            if let Some(Tok::Ident(value)) = v.first() {
                                record(
                                    format!("{name}::{value}"),
                                    Marks {
                                        deprecated: dep,
                                        noexcept: false,
                                    },
                                );
                            }
                            item.clear();
                            if end {
                                break;
                            }
                        } else {
                            item.push(e.clone());
                        }
                    }
                } else if let (Some(k), false) = (class, clean.contains(&Tok::Punct('('))) {
                    // `class NAME : public BASE {` (a name before `:`, `final` or `{`).
                    let head: Vec<&Tok> = clean[k + 1..]
                        .iter()
                        .take_while(|x| **x != Tok::Punct(':'))
                        .collect();
                    let name = head
                        .iter()
                        .rev()
                        .find_map(|x| match x {
                            Tok::Ident(s) if s != "final" => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    record(
                        format!("class {name}"),
                        Marks {
                            deprecated,
                            noexcept: false,
                        },
                    );
                    scopes.push(Scope::Class(name));
                } else if clean.contains(&Tok::Punct('(')) {
                    declare(&stmt, &scopes, &mut record);
                    scopes.push(Scope::Body);
                } else {
                    // A braced initializer (`MAX_DIMS{8}`) or an unnamed scope.
                    scopes.push(Scope::Body);
                }
                stmt.clear();
            }
            _ => stmt.push(t.clone()),
        }
    }
    decls
}

/// Records the function declared by `stmt` (anything without a parameter list is ignored).
fn declare(stmt: &[Tok], scopes: &[Scope], record: &mut impl FnMut(Key, Marks)) {
    let (clean, deprecated) = strip_attributes(stmt);
    if clean
        .iter()
        .any(|x| is(x, "using") || is(x, "typedef") || is(x, "friend") || is(x, "operator"))
    {
        return;
    }
    let Some(open) = clean.iter().position(|x| *x == Tok::Punct('(')) else {
        return;
    };
    let Some(Tok::Ident(name)) = open.checked_sub(1).map(|k| &clean[k]) else {
        return;
    };
    if open >= 2 && clean[open - 2] == Tok::Punct('~') {
        return; // destructors: implicitly noexcept either way
    }
    let Some(close) = close_paren(&clean, open) else {
        return;
    };
    let params = &clean[open + 1..close];
    let arity = if params.is_empty() || (params.len() == 1 && is(&params[0], "void")) {
        0
    } else {
        let mut depth = 0;
        let mut commas = 0;
        for p in params {
            match p {
                Tok::Punct('(' | '<' | '[') => depth += 1,
                Tok::Punct(')' | '>' | ']') => depth -= 1,
                Tok::Punct(',') if depth == 0 => commas += 1,
                _ => {}
            }
        }
        commas + 1
    };
    let tail = &clean[close + 1..];
    let noexcept = tail
        .iter()
        .enumerate()
        .any(|(k, x)| is(x, "noexcept") && !(tail.get(k + 2).is_some_and(|f| is(f, "false"))));
    let class = scopes
        .iter()
        .rev()
        .find_map(|s| match s {
            Scope::Class(c) => Some(c.as_str()),
            _ => None,
        })
        .unwrap_or("");
    record(
        format!("{class}::{name}/{arity}"),
        Marks {
            deprecated,
            noexcept,
        },
    );
}

/// The double's declarations in one shape and the real header's, compared.
fn compare(shape: (&str, &str), real_dir: &str) -> Vec<String> {
    let double_dir = root().join("cpp/trt_double/include");
    let real_dir = root().join("third_party").join(real_dir);
    let defines = [
        format!("-DTRT_DOUBLE_MAJOR={}", shape.0),
        format!("-DTRT_DOUBLE_MINOR={}", shape.1),
    ];
    let defines: Vec<&str> = defines.iter().map(String::as_str).collect();
    let double = declarations(&preprocess(
        &double_dir,
        &defines,
        &double_dir,
        &["cuda_runtime_api.h", "trt_double_control.h"],
    ));
    let real = declarations(&preprocess(&real_dir, &[], &real_dir, &[]));
    assert!(
        double.len() > 60 && real.len() > 1000,
        "the scanner found {} declarations in the double and {} in the real header",
        double.len(),
        real.len()
    );
    let mut problems = Vec::new();
    // The double's own hooks (`trt_double_*`) are not TensorRT API.
    for (key, marks) in double.iter().filter(|(k, _)| !k.contains("trt_double")) {
        let Some(marks) = marks else {
            problems.push(format!(
                "{key}: declared twice in the double with other marks"
            ));
            continue;
        };
        match real.get(key) {
            None => problems.push(format!(
                "{key}: declared by the double, not by the real header"
            )),
            Some(None) => problems.push(format!(
                "{key}: ambiguous in the real header (overloads or two classes of that name)"
            )),
            Some(Some(r)) => {
                if r.deprecated != marks.deprecated {
                    problems.push(format!(
                        "{key}: deprecated in the real header: {}, in the double: {}",
                        r.deprecated, marks.deprecated
                    ));
                }
                if r.noexcept != marks.noexcept {
                    problems.push(format!(
                        "{key}: noexcept in the real header: {}, in the double: {}",
                        r.noexcept, marks.noexcept
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn the_scanner_reads_the_real_headers_deprecations_and_noexcept() {
    // Known facts of the real headers, so a scanner that saw nothing cannot pass the comparison.
    let dir = root().join("third_party/tensorrt-10.3.0");
    let d = declarations(&preprocess(&dir, &[], &dir, &[]));
    let get = |k: &str| {
        d.get(k)
            .copied()
            .flatten()
            .unwrap_or_else(|| panic!("{k}: {d:?}"))
    };
    assert!(get("IBuilderConfig::setInt8Calibrator/1").deprecated);
    assert!(get("IBuilderConfig::setInt8Calibrator/1").noexcept);
    assert!(get("class IInt8EntropyCalibrator2").deprecated);
    assert!(!get("BuilderFlag::kFP16").deprecated);
    assert!(get("NetworkDefinitionCreationFlag::kEXPLICIT_BATCH").deprecated);
    assert!(get("IParser::parse/3").noexcept);
    assert!(!get("IExecutionContext::enqueueV3/1").deprecated);
    let dir = root().join("third_party/tensorrt-10.16.1");
    let d = declarations(&preprocess(&dir, &[], &dir, &[]));
    let get = |k: &str| d.get(k).copied().flatten().unwrap_or_else(|| panic!("{k}"));
    assert!(get("BuilderFlag::kFP16").deprecated);
    assert!(get("BuilderFlag::kINT8").deprecated);
    assert!(!get("BuilderFlag::kGPU_FALLBACK").deprecated);
    assert!(!get("NetworkDefinitionCreationFlag::kSTRONGLY_TYPED").deprecated);
}

#[test]
fn the_double_in_the_10_3_shape_marks_what_tensorrt_10_3_0_marks() {
    let problems = compare(("10", "3"), "tensorrt-10.3.0");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_double_in_the_10_16_shape_marks_what_tensorrt_10_16_1_marks() {
    let problems = compare(("10", "16"), "tensorrt-10.16.1");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
