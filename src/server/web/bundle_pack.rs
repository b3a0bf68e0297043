//! Packs the split browser bundle's many small parts into a few larger files, after
//! `cargo leptos build --release --split` and before the server starts (`kyc-desk pack-bundle`).
//!
//! Why: wasm-split cuts the program into one chunk per set of routes that use a function, so a
//! page's first visit fetches 50–140 files, most under 1 KB. Over HTTP/1.1 a browser asks six at
//! a time, and on a slow line every answer waits a full round trip: the files, not the bytes,
//! decided the time to a usable page (BENCHMARKS.md, "Fewer files per page"). No build tool
//! merges the chunks (cargo-leptos 0.3 offers no such step), so this does, with the
//! WebAssembly crates of the Bytecode Alliance (`wasmparser` reads, `wasm-encoder` re-encodes
//! with shifted indices).
//!
//! What a chunk is (checked, and anything else is refused): a module that imports only the
//! shared memory, the shared function table and shared globals from `__wasm_split`, defines
//! functions, and writes them into the table with active element segments; no exports, no
//! start function. Chunks call one another only through the table, so modules of that shape can
//! be laid side by side in one module: their types, functions, element and data segments are
//! concatenated with each index shifted past the ones before it, and the imports are shared.
//!
//! Which chunks are packed together: the chunks most routes use (at least three quarters of
//! them) and every small chunk used by more than one route go into one common pack. Then each
//! split point (a route, or a part loaded when first shown) gets a pack of its own holding the
//! rest of the chunks it needs, so a page fetches the frame, the common pack, its route's pack
//! and its route's own module. A chunk several routes share is therefore in several packs:
//! brotli finds the repeats across a route's chunks only when they are in one file (a
//! session's page: 92 KB of brotli in 27 files, 64 KB as one), and a page's first visit is
//! what the console's users wait for; the price is that moving to another page fetches the
//! shared code again, in the new page's pack. Loading a chunk twice is safe because a chunk
//! only writes its functions into the shared table at fixed slots, the same functions each
//! time (checked: [`may_load_twice`]); a chunk with data segments (which would write memory
//! again) or with a table slot that is not a constant never goes into a split point's pack and
//! is loaded once, as it is. Parts loaded when first shown (the card after a link is made, the
//! step-up prompt) get packs too, so showing one fetches again code its page already has
//! (BENCHMARKS.md measures it).
//!
//! The loader (`__wasm_split.HASH.js`) is rewritten so that every chunk of the common pack
//! loads that pack and each split point's list of dependencies names its own pack instead of
//! the chunks in it (each pack one fetch, one instance, memoised), the manifest (the preloads
//! the server writes) lists packs instead of their chunks, and — because the loader and the frame's JavaScript
//! import each other by name — both get a new name from one hash over their new contents. The
//! hash file beside the server binary names the new files. Every written file is precompressed
//! (`.br`, `.gz`) as cargo-leptos does. Running it again on a packed bundle changes nothing.
//!
//! A pack is optimised once more as a whole (`wasm-opt -Oz`, the optimiser and options the
//! release build runs on each part; [`wasm_opt`]): cargo-leptos optimises every part on its
//! own, so functions that came out identical in different parts stay there twice until they
//! share a module. Measured on the common pack: 43.2 KB of brotli before, 37.8 KB after.

use super::assets::hash_entries;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};

/// A chunk used by at least this share of the routes goes into the common pack.
const COMMON_SHARE: f64 = 0.75;
/// A chunk whose brotli size is under this many bytes and that more than one route uses goes
/// into the common pack: fetching it costs more in round trips than its bytes.
const SMALL_CHUNK_BYTES: u64 = 1_000;
/// The prefix of a pack's file name (`chunk_pack0.HASH.wasm`): a chunk name, so everything that
/// treats `chunk_*` files as parts (the server's caching and `dcz`) treats packs the same way.
const PACK_PREFIX: &str = "chunk_pack";

/// Why a bundle could not be packed.
#[derive(Debug)]
pub struct PackError(String);

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PackError {}

fn fail(message: impl Into<String>) -> PackError {
    PackError(message.into())
}

/// What packing did, for the command's report.
#[derive(Debug, PartialEq, Eq)]
pub enum Packed {
    /// Nothing to do (already packed, not split, or not hashed): nothing written.
    Unchanged(&'static str),
    /// `chunks` chunks went into `packs` packs; the hash file names the new loader.
    Done { chunks: usize, packs: usize },
}

/// What is done to each merged pack before it is written: [`wasm_opt`] in the command,
/// [`as_merged`] where no optimiser is wanted. An error stops the packing before anything
/// is written.
pub type Optimise<'a> = &'a dyn Fn(&[u8]) -> Result<Vec<u8>, String>;

/// Leaves a merged pack as it is.
pub fn as_merged(module: &[u8]) -> Result<Vec<u8>, String> {
    Ok(module.to_vec())
}

/// The options cargo-leptos 0.3 runs `wasm-opt` with on every part of a release build.
const WASM_OPT_ARGS: &[&str] = &[
    "-Oz",
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
];

/// Optimises a pack with the `wasm-opt` at `program` (binaryen 132 from npm, as `./setup.sh`
/// installs it for the release build), through two files in `work_dir` removed afterwards.
pub fn wasm_opt(program: PathBuf, work_dir: PathBuf) -> impl Fn(&[u8]) -> Result<Vec<u8>, String> {
    move |module| {
        let input = work_dir.join(format!(".pack-{}.in.wasm", std::process::id()));
        let output = work_dir.join(format!(".pack-{}.out.wasm", std::process::id()));
        let run = || -> Result<Vec<u8>, String> {
            std::fs::write(&input, module)
                .map_err(|e| format!("cannot write {}: {e}", input.display()))?;
            let answer = std::process::Command::new(&program)
                .args(WASM_OPT_ARGS)
                .arg(&input)
                .arg("-o")
                .arg(&output)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
            if !answer.status.success() {
                return Err(format!(
                    "{} failed ({}): {}",
                    program.display(),
                    answer.status,
                    String::from_utf8_lossy(&answer.stderr).trim()
                ));
            }
            std::fs::read(&output).map_err(|e| format!("cannot read {}: {e}", output.display()))
        };
        let optimised = run();
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_file(&output);
        optimised
    }
}

/// Packs the split bundle in `pkg_dir` whose names the hash file at `hash_file` gives, each
/// pack passed through `optimise` (and checked to be valid WebAssembly after it).
pub fn pack_bundle(
    pkg_dir: &Path,
    hash_file: &Path,
    optimise: Optimise<'_>,
) -> Result<Packed, PackError> {
    // No hash file is a build with unhashed names, which the server serves as it is.
    if !hash_file.exists() {
        return Ok(Packed::Unchanged(
            "no hash file: the bundle's names are not hashed",
        ));
    }
    let hashes = read(hash_file)?;
    let hash_of = |kind: &str| {
        hash_entries(&hashes).find_map(|(k, hash)| (k == kind).then(|| hash.to_string()))
    };
    let (Some(js_hash), Some(split_hash), Some(manifest_hash)) =
        (hash_of("js"), hash_of("split"), hash_of("manifest"))
    else {
        return Ok(Packed::Unchanged("the bundle is not split"));
    };
    let manifest_name = format!("__wasm_split_manifest.{manifest_hash}.json");
    let manifest: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&read(&pkg_dir.join(&manifest_name))?)
            .map_err(|e| fail(format!("{manifest_name} is not a split manifest: {e}")))?;
    if manifest
        .values()
        .flatten()
        .any(|part| part.starts_with(PACK_PREFIX))
    {
        return Ok(Packed::Unchanged("the bundle is already packed"));
    }
    let loader_name = format!("__wasm_split.{split_hash}.js");
    let loader = read(&pkg_dir.join(&loader_name))?;
    let main_js_name = format!("kyc-desk.{js_hash}.js");
    let main_js = read(&pkg_dir.join(&main_js_name))?;

    let plan = plan_packs(&manifest, |chunk| {
        let br = pkg_dir.join(format!("{chunk}.wasm.br"));
        let raw = pkg_dir.join(format!("{chunk}.wasm"));
        std::fs::metadata(&br)
            .or_else(|_| std::fs::metadata(&raw))
            .map(|m| m.len())
            .unwrap_or(u64::MAX)
    });
    if plan.is_empty() {
        return Ok(Packed::Unchanged("no chunks worth packing"));
    }

    // Each pack: merge its chunks, name it by its content, write it with its compressed forms.
    let mut pack_of = HashMap::<&str, String>::new();
    let mut chunks = 0;
    for (index, members) in plan.iter().enumerate() {
        let stem = write_pack(pkg_dir, index, members, optimise)?;
        for chunk in members {
            pack_of.insert(chunk.as_str(), stem.clone());
        }
        chunks += members.len();
    }

    // Each split point's pack: the rest of its chunks, those that may be loaded twice.
    let mut repeatable = HashMap::<&str, bool>::new();
    for chunk in manifest.values().flatten() {
        if chunk_number(chunk).is_some()
            && !pack_of.contains_key(chunk.as_str())
            && !repeatable.contains_key(chunk.as_str())
        {
            let bytes = std::fs::read(pkg_dir.join(format!("{chunk}.wasm")))
                .map_err(|e| fail(format!("cannot read {chunk}.wasm: {e}")))?;
            let may = may_load_twice(&bytes).map_err(|e| fail(format!("{chunk}.wasm: {e}")))?;
            repeatable.insert(chunk.as_str(), may);
        }
    }
    let own_plan = plan_split_point_packs(&manifest, |chunk| {
        repeatable.get(chunk).copied().unwrap_or(false)
    });
    let mut own_pack_of = BTreeMap::<String, String>::new();
    let mut stem_of_members = HashMap::<Vec<String>, String>::new();
    let mut own_chunks = BTreeSet::<&str>::new();
    for (split_point, members) in &own_plan {
        let stem = match stem_of_members.get(members) {
            Some(stem) => stem.clone(),
            None => {
                let index = plan.len() + stem_of_members.len();
                let stem = write_pack(pkg_dir, index, members, optimise)?;
                stem_of_members.insert(members.clone(), stem.clone());
                stem
            }
        };
        own_chunks.extend(members.iter().map(String::as_str));
        own_pack_of.insert(split_point.clone(), stem);
    }
    chunks += own_chunks.len();

    let packed_loader = rewrite_loader(&loader, &pack_of)?;
    let packed_loader = give_split_points_their_packs(&packed_loader, &own_plan, &own_pack_of)?;
    let packed_manifest = rewrite_manifest(&manifest, &pack_of, &own_plan, &own_pack_of);
    let manifest_json = serde_json::to_string(&packed_manifest)
        .map_err(|e| fail(format!("cannot write the manifest: {e}")))?;

    // The loader imports the frame's JavaScript by name and that file imports the loader: one
    // hash over both new contents names both, so a change in either renames both.
    let pair_hash = content_hash(&[packed_loader.as_bytes(), main_js.as_bytes()]);
    let new_loader_name = format!("__wasm_split.{pair_hash}.js");
    let new_main_js_name = format!("kyc-desk.{pair_hash}.js");
    let packed_loader = replace_imports(&packed_loader, &main_js_name, &new_main_js_name)?;
    let packed_main_js = replace_imports(&main_js, &loader_name, &new_loader_name)?;
    let new_manifest_hash = content_hash(&[manifest_json.as_bytes()]);

    write_with_compressed(&pkg_dir.join(&new_loader_name), packed_loader.as_bytes())?;
    write_with_compressed(&pkg_dir.join(&new_main_js_name), packed_main_js.as_bytes())?;
    write_with_compressed(
        &pkg_dir.join(format!("__wasm_split_manifest.{new_manifest_hash}.json")),
        manifest_json.as_bytes(),
    )?;
    // The hash file last: until it is written the server would still find the unpacked bundle.
    let new_hashes = hashes
        .lines()
        .map(|line| match line.split_once(':').map(|(k, _)| k.trim()) {
            Some("js") => format!("js: {pair_hash}"),
            Some("split") => format!("split: {pair_hash}"),
            Some("manifest") => format!("manifest: {new_manifest_hash}"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(hash_file, new_hashes + "\n")
        .map_err(|e| fail(format!("cannot write {}: {e}", hash_file.display())))?;
    Ok(Packed::Done {
        chunks,
        packs: plan.len() + stem_of_members.len(),
    })
}

/// Merges `members`, optimises the result, checks it and writes it (with its compressed forms)
/// as `chunk_pack{index}.HASH.wasm`; returns the name without `.wasm`.
fn write_pack(
    pkg_dir: &Path,
    index: usize,
    members: &[String],
    optimise: Optimise<'_>,
) -> Result<String, PackError> {
    let modules = members
        .iter()
        .map(|chunk| {
            std::fs::read(pkg_dir.join(format!("{chunk}.wasm")))
                .map_err(|e| fail(format!("cannot read {chunk}.wasm: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge_chunks(&modules)
        .and_then(|merged| optimise(&merged))
        .and_then(|optimised| {
            wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
                .validate_all(&optimised)
                .map_err(|e| format!("the optimised pack is not valid: {e}"))?;
            Ok(optimised)
        })
        .map_err(|e| fail(format!("cannot pack {}: {e}", members.join(", "))))?;
    let stem = format!("{PACK_PREFIX}{index}.{}", content_hash(&[&merged]));
    write_with_compressed(&pkg_dir.join(format!("{stem}.wasm")), &merged)?;
    Ok(stem)
}

/// Whether loading a chunk a second time (from another split point's pack) changes nothing:
/// no data segments (which would write memory again) and every element segment active at a
/// constant slot (the same functions into the same places).
fn may_load_twice(module: &[u8]) -> Result<bool, String> {
    use wasmparser::{ElementKind, Operator, Payload};
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload.map_err(|e| e.to_string())? {
            Payload::DataSection(section) if section.count() > 0 => return Ok(false),
            Payload::ElementSection(section) => {
                for element in section {
                    let ElementKind::Active { offset_expr, .. } =
                        element.map_err(|e| e.to_string())?.kind
                    else {
                        return Ok(false);
                    };
                    let mut offset = offset_expr.get_operators_reader();
                    let constant = matches!(offset.read(), Ok(Operator::I32Const { .. }))
                        && matches!(offset.read(), Ok(Operator::End));
                    if !constant {
                        return Ok(false);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(true)
}

/// Each split point's own pack: the chunks it needs that are not in the common pack and that
/// `may_repeat` admits (no data segments: such a chunk may be loaded again by another split
/// point's pack), when there are two or more of them.
fn plan_split_point_packs(
    manifest: &BTreeMap<String, Vec<String>>,
    may_repeat: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    manifest
        .iter()
        .filter_map(|(split_point, parts)| {
            let mut members: Vec<String> = parts
                .iter()
                .filter(|part| chunk_number(part).is_some() && may_repeat(part))
                .cloned()
                .collect();
            members.sort_by_key(|chunk| chunk_number(chunk));
            members.dedup();
            (members.len() >= 2).then(|| (split_point.clone(), members))
        })
        .collect()
}

/// The loader with each split point's list of dependencies naming its own pack instead of the
/// chunks in it, a loading declaration for each pack, and no declaration of a chunk that no
/// list names any more.
fn give_split_points_their_packs(
    loader: &str,
    own_plan: &BTreeMap<String, Vec<String>>,
    own_pack_of: &BTreeMap<String, String>,
) -> Result<String, PackError> {
    if own_plan.is_empty() {
        return Ok(loader.to_string());
    }
    const DECLARATION: &str = "const __chunk_";
    const EXPORT: &str = "export const __wasm_split_load_";
    // Each chunk's loading variable and the text of its declaration.
    let mut declarations = Vec::<(String, String, &str)>::new();
    let mut from = 0;
    while let Some(at) = loader[from..].find(DECLARATION).map(|at| at + from) {
        let end = loader[at..]
            .find(", []);")
            .map(|i| at + i + ", []);".len())
            .ok_or_else(|| {
                fail("the split loader has a chunk declaration this tool does not know")
            })?;
        let text = &loader[at..end];
        let var = text["const ".len()..].split(' ').next().unwrap_or_default();
        if let Some(file) = text
            .split("new URL(\"./")
            .nth(1)
            .and_then(|s| s.split(".wasm\"").next())
        {
            declarations.push((var.to_string(), file.to_string(), text));
        }
        from = end;
    }
    let var_of = |chunk: &str| {
        declarations
            .iter()
            .find(|(_, file, _)| file == chunk)
            .map(|(var, _, _)| var.as_str())
    };
    // A pack is declared as the first chunk is, with its own variable and file.
    let (template_var, template_file, template) = declarations
        .first()
        .ok_or_else(|| fail("the split loader declares no chunk"))?;

    // The lists: each split point's names its pack where its first packed chunk was.
    let mut out = String::with_capacity(loader.len());
    let mut rest = loader;
    let mut pack_vars = BTreeMap::<&str, String>::new();
    let mut lists = 0;
    while let Some(at) = rest.find(EXPORT) {
        let name_at = at + EXPORT.len();
        let split_point = rest[name_at..].split(' ').next().unwrap_or_default();
        let open = rest[at..]
            .find(", [")
            .map(|i| at + i + ", [".len())
            .ok_or_else(|| fail(format!("no list of dependencies for {split_point}")))?;
        let close = rest[open..].find(']').map(|i| open + i).ok_or_else(|| {
            fail(format!(
                "an unclosed list of dependencies for {split_point}"
            ))
        })?;
        out.push_str(&rest[..open]);
        let names: Vec<&str> = rest[open..close].split(',').map(str::trim).collect();
        match (own_plan.get(split_point), own_pack_of.get(split_point)) {
            (Some(members), Some(pack)) => {
                lists += 1;
                let packed: Vec<&str> = members
                    .iter()
                    .map(|chunk| {
                        var_of(chunk).ok_or_else(|| {
                            fail(format!("the split loader does not declare {chunk}"))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                if let Some(missing) = packed.iter().find(|var| !names.contains(var)) {
                    return Err(fail(format!(
                        "{split_point}'s list of dependencies lacks {missing}"
                    )));
                }
                let index = pack_vars.len();
                let pack_var = pack_vars
                    .entry(pack.as_str())
                    .or_insert_with(|| format!("__own_pack_{index}"))
                    .clone();
                let mut listed = Vec::<&str>::new();
                for name in names {
                    let name = if packed.contains(&name) {
                        pack_var.as_str()
                    } else {
                        name
                    };
                    if !listed.contains(&name) {
                        listed.push(name);
                    }
                }
                out.push_str(&listed.join(", "));
            }
            _ => out.push_str(&rest[open..close]),
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    if lists != own_plan.len() {
        return Err(fail(format!(
            "the split loader has lists for {lists} of the {} split points with packs",
            own_plan.len()
        )));
    }

    // Declarations: one per pack (before the first export), none for a chunk no list names.
    let first_export = out
        .find(EXPORT)
        .ok_or_else(|| fail("the split loader exports no split point"))?;
    let mut pack_declarations = String::new();
    for (pack, var) in &pack_vars {
        let declaration = template.replacen(template_var.as_str(), var, 1).replace(
            &format!("\"./{template_file}.wasm\""),
            &format!("\"./{pack}.wasm\""),
        );
        pack_declarations.push_str(&declaration);
        pack_declarations.push('\n');
    }
    out.insert_str(first_export, &pack_declarations);
    for (var, _, text) in &declarations {
        let without = out.replacen(&format!("{text}\n"), "", 1);
        if !contains_name(&without, var) {
            out = without;
        }
    }
    Ok(out)
}

/// Which chunks go together: a list of packs, each two or more chunk names, in the order of
/// their lowest chunk number. `size` gives a chunk's size on the wire.
pub fn plan_packs(
    manifest: &BTreeMap<String, Vec<String>>,
    size: impl Fn(&str) -> u64,
) -> Vec<Vec<String>> {
    let routes = manifest.len();
    let mut users = BTreeMap::<&str, usize>::new();
    for parts in manifest.values() {
        for part in parts.iter().filter(|p| chunk_number(p).is_some()) {
            *users.entry(part.as_str()).or_default() += 1;
        }
    }
    let common_from = ((routes as f64) * COMMON_SHARE).ceil() as usize;
    let mut common: Vec<&str> = users
        .iter()
        .filter(|(chunk, used_by)| {
            **used_by >= common_from.max(2) || (**used_by >= 2 && size(chunk) < SMALL_CHUNK_BYTES)
        })
        .map(|(chunk, _)| *chunk)
        .collect();
    common.sort_by_key(|chunk| chunk_number(chunk));
    if common.len() < 2 {
        return Vec::new();
    }
    vec![common.into_iter().map(str::to_string).collect()]
}

/// The number of `chunk_N.HASH`, or `None` for any other part (a route's own split module).
fn chunk_number(part: &str) -> Option<u32> {
    part.strip_prefix("chunk_")?.split('.').next()?.parse().ok()
}

/// The loader with every chunk of a pack loading that pack: the first chunk of each pack (the
/// lowest number, declared first) fetches the pack's file, the others are the same loader.
fn rewrite_loader(loader: &str, pack_of: &HashMap<&str, String>) -> Result<String, PackError> {
    let mut first_of_pack = HashMap::<&str, String>::new();
    // The later chunks of a pack and the chunk that loads it (its first).
    let mut alias_of = HashMap::<String, String>::new();
    let mut out = String::with_capacity(loader.len());
    let mut rest = loader;
    let mut rewritten = 0;
    const DECLARATION: &str = "const __chunk_";
    while let Some(at) = rest.find(DECLARATION) {
        out.push_str(&rest[..at]);
        let declaration = &rest[at..];
        // One declaration: `const __chunk_N = makeLoad(…\n, []);`
        let end = declaration
            .find(", []);")
            .map(|i| i + ", []);".len())
            .ok_or_else(|| {
                fail("the split loader has a chunk declaration this tool does not know")
            })?;
        let text = &declaration[..end];
        // `__chunk_N`: the name after `const `.
        let var = text["const ".len()..].split(' ').next().unwrap_or_default();
        let file = text
            .split("new URL(\"./")
            .nth(1)
            .and_then(|s| s.split(".wasm\"").next());
        rest = &declaration[end..];
        match file.and_then(|f| pack_of.get(f).map(|pack| (f, pack))) {
            Some((file, pack)) => {
                rewritten += 1;
                if let Some(first) = first_of_pack.get(pack.as_str()) {
                    // Not declared at all: the lists that name it name `first` instead (below).
                    alias_of.insert(var.to_string(), first.clone());
                    rest = rest.strip_prefix('\n').unwrap_or(rest);
                } else {
                    first_of_pack.insert(pack.as_str(), var.to_string());
                    out.push_str(
                        &text.replace(&format!("\"./{file}.wasm\""), &format!("\"./{pack}.wasm\"")),
                    );
                }
            }
            None => out.push_str(text),
        }
    }
    out.push_str(rest);
    if rewritten != pack_of.len() {
        return Err(fail(format!(
            "the split loader declares {rewritten} of the {} chunks to pack",
            pack_of.len()
        )));
    }
    compact_loader(&out, &alias_of)
}

/// The loader without what packing made redundant, since every page fetches it: the comments
/// that name each chunk's routes, and the later chunks of a pack, whose names each list of
/// dependencies replaces by the pack's loading chunk, named once per list (measured on one
/// build: 137,006 → 22,773 bytes, 6,113 → 2,928 of brotli). A later chunk still named elsewhere stops the packing.
fn compact_loader(loader: &str, alias_of: &HashMap<String, String>) -> Result<String, PackError> {
    let mut text = String::with_capacity(loader.len());
    let mut rest = loader;
    // A comment starts a line; it goes with its line break.
    while let Some(at) = rest.find("/*") {
        let at_line_start = at == 0 || rest[..at].ends_with('\n');
        let Some(len) = rest[at..].find("*/").map(|end| end + 2) else {
            break;
        };
        if at_line_start {
            text.push_str(&rest[..at]);
            rest = &rest[at + len..];
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        } else {
            text.push_str(&rest[..at + len]);
            rest = &rest[at + len..];
        }
    }
    text.push_str(rest);

    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(", [") {
        let open = at + ", [".len();
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let Some(close) = rest.find(']') else { break };
        let names: Vec<&str> = rest[..close]
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        if names.iter().all(|name| name.starts_with("__chunk_")) {
            let mut listed = Vec::<&str>::new();
            for name in names {
                let name = alias_of.get(name).map_or(name, String::as_str);
                if !listed.contains(&name) {
                    listed.push(name);
                }
            }
            out.push_str(&listed.join(", "));
            rest = &rest[close..];
        }
    }
    out.push_str(rest);
    if let Some(left) = alias_of.keys().find(|name| contains_name(&out, name)) {
        return Err(fail(format!(
            "the split loader names the packed chunk {left} outside a list of dependencies"
        )));
    }
    Ok(out)
}

/// Whether `text` names the JavaScript variable `name` (not merely a longer one it begins).
fn contains_name(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(at, _)| {
        !text[at + name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The manifest with each packed chunk replaced by its pack (the common one, or the route's
/// own), every pack named once per route.
fn rewrite_manifest(
    manifest: &BTreeMap<String, Vec<String>>,
    pack_of: &HashMap<&str, String>,
    own_plan: &BTreeMap<String, Vec<String>>,
    own_pack_of: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    manifest
        .iter()
        .map(|(route, parts)| {
            let mut seen = BTreeSet::new();
            let own = own_plan.get(route).zip(own_pack_of.get(route));
            let parts = parts
                .iter()
                .map(|part| match own {
                    Some((members, pack)) if members.contains(part) => pack.clone(),
                    _ => pack_of.get(part.as_str()).unwrap_or(part).clone(),
                })
                .filter(|part| seen.insert(part.clone()))
                .collect();
            (route.clone(), parts)
        })
        .collect()
}

/// Points the module's `import … from "./{from}"` statements at `./{to}`, and fails when none
/// names `from` (the two files no longer import each other as this tool expects). Only the
/// import statements: the frame's WebAssembly names its imports by the old name, and the
/// wasm-bindgen glue's import object keeps those keys.
fn replace_imports(text: &str, from: &str, to: &str) -> Result<String, PackError> {
    let mut out = text.to_string();
    let mut found = false;
    for quote in ["from\"", "from \""] {
        let old = format!("{quote}./{from}\"");
        found |= out.contains(&old);
        out = out.replace(&old, &format!("{quote}./{to}\""));
    }
    if !found {
        return Err(fail(format!("expected an import of {from}, found none")));
    }
    Ok(out)
}

/// Merges chunk modules (the shape described atop this file) into one module.
pub fn merge_chunks(modules: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    use wasm_encoder::{
        CodeSection, DataCountSection, DataSection, ElementSection, EntityType, FunctionSection,
        ImportSection, Module, TypeSection,
    };
    use wasmparser::{Parser, Payload, TypeRef};

    let mut types = TypeSection::new();
    let mut functions = FunctionSection::new();
    let mut elements = ElementSection::new();
    let mut code = CodeSection::new();
    let mut data = DataSection::new();
    // The shared imports (module, name, type), in first-seen order; a name is imported once.
    let mut imports: Vec<(String, String, TypeRef)> = Vec::new();
    let mut global_imports = 0u32;

    for (number, bytes) in modules.iter().enumerate() {
        let mut shift = Shift {
            types: types.len(),
            functions: functions.len(),
            data: data.len(),
            elements: elements.len(),
            globals: Vec::new(),
        };
        let what = |e: &dyn fmt::Display| format!("module {number}: {e}");
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| what(&e))? {
                Payload::Version { .. } | Payload::End(_) | Payload::CustomSection(_) => {}
                Payload::TypeSection(section) => {
                    RoundtripReencoder
                        .parse_type_section(&mut types, section)
                        .map_err(|e| what(&e))?;
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import.map_err(|e| what(&e))?;
                        let found = imports
                            .iter()
                            .position(|(m, n, _)| m == import.module && n == import.name);
                        match import.ty {
                            TypeRef::Global(_) => {
                                if found.is_some_and(|i| imports[i].2 != import.ty) {
                                    return Err(what(&format!(
                                        "{}.{} is imported with two types",
                                        import.module, import.name
                                    )));
                                }
                                let index = match found {
                                    Some(i) => imports[..i]
                                        .iter()
                                        .filter(|(_, _, t)| matches!(t, TypeRef::Global(_)))
                                        .count()
                                        as u32,
                                    None => {
                                        imports.push((
                                            import.module.to_string(),
                                            import.name.to_string(),
                                            import.ty,
                                        ));
                                        global_imports += 1;
                                        global_imports - 1
                                    }
                                };
                                shift.globals.push(index);
                            }
                            TypeRef::Memory(_) | TypeRef::Table(_) => {
                                if let Some(i) = found {
                                    if imports[i].2 != import.ty {
                                        return Err(what(&format!(
                                            "{}.{} is imported with two types",
                                            import.module, import.name
                                        )));
                                    }
                                } else if imports.iter().any(|(_, _, t)| {
                                    std::mem::discriminant(t) == std::mem::discriminant(&import.ty)
                                }) {
                                    return Err(what(&"a second memory or table is imported"));
                                } else {
                                    imports.push((
                                        import.module.to_string(),
                                        import.name.to_string(),
                                        import.ty,
                                    ));
                                }
                            }
                            _ => {
                                return Err(what(&format!(
                                    "imports {}.{}, which is not a memory, table or global",
                                    import.module, import.name
                                )));
                            }
                        }
                    }
                }
                Payload::FunctionSection(section) => {
                    shift
                        .parse_function_section(&mut functions, section)
                        .map_err(|e| what(&e))?;
                }
                Payload::ElementSection(section) => {
                    shift
                        .parse_element_section(&mut elements, section)
                        .map_err(|e| what(&e))?;
                }
                Payload::DataCountSection { .. } => {}
                Payload::DataSection(section) => {
                    shift
                        .parse_data_section(&mut data, section)
                        .map_err(|e| what(&e))?;
                }
                Payload::CodeSectionStart { .. } => {}
                Payload::CodeSectionEntry(body) => {
                    shift
                        .parse_function_body(&mut code, body)
                        .map_err(|e| what(&e))?;
                }
                other => {
                    return Err(what(&format!(
                        "has a section a chunk does not have ({:?})",
                        other.as_section().map(|(id, _)| id)
                    )));
                }
            }
        }
    }

    let mut import_section = ImportSection::new();
    for (module, name, ty) in &imports {
        let ty = RoundtripReencoder
            .entity_type(*ty)
            .map_err(|e| e.to_string())?;
        let ty: EntityType = ty;
        import_section.import(module, name, ty);
    }
    let mut module = Module::new();
    module.section(&types);
    module.section(&import_section);
    module.section(&functions);
    if !elements.is_empty() {
        module.section(&elements);
    }
    if !data.is_empty() {
        module.section(&DataCountSection { count: data.len() });
    }
    module.section(&code);
    if !data.is_empty() {
        module.section(&data);
    }
    let merged = module.finish();
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&merged)
        .map_err(|e| format!("the packed module is not valid: {e}"))?;
    Ok(merged)
}

/// The index shifts of one chunk inside the pack: everything it defines comes after what the
/// chunks before it defined; its globals are the pack's shared imports.
struct Shift {
    types: u32,
    functions: u32,
    data: u32,
    elements: u32,
    globals: Vec<u32>,
}

impl Reencode for Shift {
    type Error = String;

    fn type_index(&mut self, ty: u32) -> Result<u32, wasm_encoder::reencode::Error<String>> {
        Ok(ty + self.types)
    }

    fn function_index(&mut self, func: u32) -> Result<u32, wasm_encoder::reencode::Error<String>> {
        Ok(func + self.functions)
    }

    fn data_index(&mut self, data: u32) -> Result<u32, wasm_encoder::reencode::Error<String>> {
        Ok(data + self.data)
    }

    fn element_index(
        &mut self,
        element: u32,
    ) -> Result<u32, wasm_encoder::reencode::Error<String>> {
        Ok(element + self.elements)
    }

    fn global_index(&mut self, global: u32) -> Result<u32, wasm_encoder::reencode::Error<String>> {
        self.globals.get(global as usize).copied().ok_or_else(|| {
            wasm_encoder::reencode::Error::UserError(format!("global {global} is not imported"))
        })
    }
}

/// A content hash as cargo-leptos writes them: 16 bytes, URL-safe base64 without padding.
fn content_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hasher.finalize()[..16])
}

fn read(path: &Path) -> Result<String, PackError> {
    std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
}

/// Writes `path` and, beside it, its brotli (`.br`, quality 11) and gzip (`.gz`, best) forms.
fn write_with_compressed(path: &Path, bytes: &[u8]) -> Result<(), PackError> {
    let failed = |p: &Path, e: std::io::Error| fail(format!("cannot write {}: {e}", p.display()));
    std::fs::write(path, bytes).map_err(|e| failed(path, e))?;
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", path.display()));

    let br_path = with("br");
    let mut br = Vec::new();
    {
        let params = brotli::enc::BrotliEncoderParams {
            quality: 11,
            lgwin: 22,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &bytes[..], &mut br, &params)
            .map_err(|e| failed(&br_path, e))?;
    }
    std::fs::write(&br_path, br).map_err(|e| failed(&br_path, e))?;

    let gz_path = with("gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).map_err(|e| failed(&gz_path, e))?;
    let gz = gz.finish().map_err(|e| failed(&gz_path, e))?;
    std::fs::write(&gz_path, gz).map_err(|e| failed(&gz_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, ConstExpr, ElementSection, Elements, EntityType, Function, FunctionSection,
        GlobalType, ImportSection, Instruction, MemoryType, Module, RefType, TableType,
        TypeSection, ValType,
    };
    use wasmparser::{ElementItems, ElementKind, Operator, Parser, Payload};

    /// A chunk as wasm-split writes one: shared imports, functions (given as their type and
    /// body), one active element segment putting them into the table at `slot`.
    fn chunk(
        with_global: bool,
        types: &[(&[ValType], &[ValType])],
        funcs: &[(u32, Vec<Instruction<'static>>)],
        slot: i32,
    ) -> Vec<u8> {
        let mut type_section = TypeSection::new();
        for (params, results) in types {
            type_section
                .ty()
                .function(params.to_vec(), results.to_vec());
        }
        let mut imports = ImportSection::new();
        let memory = MemoryType {
            minimum: 17,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        };
        imports.import("__wasm_split", "memory", EntityType::Memory(memory));
        let table = TableType {
            element_type: RefType::FUNCREF,
            minimum: 16,
            maximum: None,
            table64: false,
            shared: false,
        };
        imports.import("__wasm_split", "__indirect_function_table", table);
        if with_global {
            imports.import("__wasm_split", "__wasm_split_shared0", shared_global(true));
        }
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        for (ty, body) in funcs {
            functions.function(*ty);
            let mut function = Function::new([]);
            for instruction in body {
                function.instruction(instruction);
            }
            function.instruction(&Instruction::End);
            code.function(&function);
        }
        let mut elements = ElementSection::new();
        let indices: Vec<u32> = (0..funcs.len() as u32).collect();
        elements.active(
            None,
            &ConstExpr::i32_const(slot),
            Elements::Functions(indices.into()),
        );
        let mut module = Module::new();
        module.section(&type_section);
        module.section(&imports);
        module.section(&functions);
        module.section(&elements);
        module.section(&code);
        module.finish()
    }

    /// The shared global's type (wasm-split's is mutable: the stack pointer).
    fn shared_global(mutable: bool) -> GlobalType {
        GlobalType {
            val_type: ValType::I32,
            mutable,
            shared: false,
        }
    }

    /// A module whose only content is one import (and a `() -> ()` type for a function's).
    fn importing(module: &str, name: &str, entity: EntityType) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut imports = ImportSection::new();
        imports.import(module, name, entity);
        let mut out = Module::new();
        out.section(&types);
        out.section(&imports);
        out.finish()
    }

    /// Chunk A: f0 calls f1, f1 reads the shared global; both into the table at slot 3.
    fn chunk_a() -> Vec<u8> {
        chunk(
            true,
            &[(&[], &[ValType::I32])],
            &[
                (0, vec![Instruction::Call(1)]),
                (0, vec![Instruction::GlobalGet(0)]),
            ],
            3,
        )
    }

    /// Chunk B: g0 calls g1 and makes an indirect call of its type 0; at slot 5.
    fn chunk_b() -> Vec<u8> {
        chunk(
            false,
            &[(&[], &[ValType::I32]), (&[ValType::I32], &[ValType::I32])],
            &[
                (
                    1,
                    vec![
                        Instruction::Call(1),
                        Instruction::Drop,
                        Instruction::I32Const(4),
                        Instruction::CallIndirect {
                            type_index: 0,
                            table_index: 0,
                        },
                    ],
                ),
                (0, vec![Instruction::I32Const(7)]),
            ],
            5,
        )
    }

    #[derive(Default, Debug)]
    struct Shape {
        imports: Vec<String>,
        types: u32,
        functions: u32,
        /// (offset, function indices) of each active element segment.
        segments: Vec<(i32, Vec<u32>)>,
        /// Per function body: (direct call targets, indirect call type indices, globals read).
        bodies: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)>,
    }

    fn shape(bytes: &[u8]) -> Shape {
        let mut shape = Shape::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.unwrap() {
                Payload::TypeSection(s) => shape.types = s.count(),
                Payload::ImportSection(s) => {
                    for import in s.into_imports() {
                        let import = import.unwrap();
                        shape.imports.push(import.name.to_string());
                    }
                }
                Payload::FunctionSection(s) => shape.functions = s.count(),
                Payload::ElementSection(s) => {
                    for element in s {
                        let element = element.unwrap();
                        let ElementKind::Active { offset_expr, .. } = element.kind else {
                            panic!("a passive segment");
                        };
                        let Operator::I32Const { value } =
                            offset_expr.get_operators_reader().read().unwrap()
                        else {
                            panic!("an offset that is not a constant");
                        };
                        let ElementItems::Functions(items) = element.items else {
                            panic!("items that are not function indices");
                        };
                        let items = items.into_iter().map(Result::unwrap).collect();
                        shape.segments.push((value, items));
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let (mut calls, mut indirect, mut globals) = (vec![], vec![], vec![]);
                    for op in body.get_operators_reader().unwrap() {
                        match op.unwrap() {
                            Operator::Call { function_index } => calls.push(function_index),
                            Operator::CallIndirect { type_index, .. } => indirect.push(type_index),
                            Operator::GlobalGet { global_index } => globals.push(global_index),
                            _ => {}
                        }
                    }
                    shape.bodies.push((calls, indirect, globals));
                }
                _ => {}
            }
        }
        shape
    }

    #[test]
    fn merged_chunks_keep_their_calls_table_slots_and_shared_imports() {
        let merged = merge_chunks(&[chunk_a(), chunk_b()]).unwrap();
        let shape = shape(&merged);
        assert_eq!(
            shape.imports,
            [
                "memory",
                "__indirect_function_table",
                "__wasm_split_shared0"
            ],
            "each shared import once"
        );
        assert_eq!((shape.types, shape.functions), (3, 4));
        // B's functions come after A's: its slots list them as 2 and 3.
        assert_eq!(shape.segments, [(3, vec![0, 1]), (5, vec![2, 3])]);
        // A's own call and global read are unchanged; B's call to its g1 now names function
        // 3, and its indirect call names its type 0, now type 1 (after A's one type).
        assert_eq!(shape.bodies[0], (vec![1], vec![], vec![]));
        assert_eq!(shape.bodies[1], (vec![], vec![], vec![0]));
        assert_eq!(shape.bodies[2], (vec![3], vec![1], vec![]));
        assert_eq!(shape.bodies[3], (vec![], vec![], vec![]));
    }

    #[test]
    fn a_chunk_of_another_shape_is_refused() {
        // A chunk that imports a function: its indices would need a shift this tool does not do.
        let function = importing("env", "f", EntityType::Function(0));
        let error = merge_chunks(&[chunk_a(), function]).unwrap_err();
        assert!(error.contains("env.f"), "{error}");

        // The shared global imported as an immutable one by a second chunk.
        let immutable = shared_global(false).into();
        let global = importing("__wasm_split", "__wasm_split_shared0", immutable);
        let error = merge_chunks(&[chunk_a(), global]).unwrap_err();
        assert!(error.contains("imported with two types"), "{error}");
    }

    #[test]
    fn a_bundle_without_a_hash_file_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let packed = pack_bundle(dir.path(), &dir.path().join("hash.txt"), &as_merged).unwrap();
        assert!(matches!(packed, Packed::Unchanged(why) if why.contains("not hashed")));
        assert!(!dir.path().join("hash.txt").exists(), "nothing written");
    }

    const LOADER: &str = r#"import { initSync } from "./kyc-desk.JSOLD.js";
const __chunk_1 = makeLoad(() => {
    const src = fetch(new URL("./chunk_1.aaa.wasm", import.meta.url));
    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));
}
, []);
const __chunk_2 = makeLoad(() => async (_imp) => ({}), []);
/* __route_a, __route_b */
const __chunk_3 = makeLoad(() => {
    const src = fetch(new URL("./chunk_3.ccc.wasm", import.meta.url));
    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));
}
, []);
const __chunk_4 = makeLoad(() => {
    const src = fetch(new URL("./chunk_4.ddd.wasm", import.meta.url));
    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));
}
, []);
export const __route_a = wrapAsyncCb(makeLoad(() => {}, [__chunk_1, __chunk_2, __chunk_3]));
"#;

    #[test]
    fn every_chunk_of_a_pack_loads_the_pack_once() {
        let pack_of = HashMap::from([
            ("chunk_1.aaa", "chunk_pack0.ppp".to_string()),
            ("chunk_3.ccc", "chunk_pack0.ppp".to_string()),
        ]);
        let loader = rewrite_loader(LOADER, &pack_of).unwrap();
        assert!(
            loader.contains(r#"new URL("./chunk_pack0.ppp.wasm""#),
            "{loader}"
        );
        assert!(!loader.contains("chunk_1.aaa") && !loader.contains("chunk_3.ccc"));
        assert!(!contains_name(&loader, "__chunk_3"), "{loader}");
        assert!(
            !loader.contains("/*") && !loader.contains("\n\n"),
            "{loader}"
        );
        assert!(
            loader.contains(r#"new URL("./chunk_4.ddd.wasm""#),
            "unpacked chunk kept"
        );
        assert!(loader.contains("const __chunk_2 = makeLoad(() => async (_imp) => ({}), []);"));
        assert!(
            loader.ends_with("[__chunk_1, __chunk_2]));\n"),
            "the pack once in the list: {loader}"
        );
        assert!(contains_name("a, __chunk_1]", "__chunk_1"));
        assert!(!contains_name("a, __chunk_12]", "__chunk_1"));

        let manifest = BTreeMap::from([
            (
                "a".to_string(),
                vec![
                    "chunk_1.aaa".into(),
                    "chunk_3.ccc".into(),
                    "split_a.x".into(),
                ],
            ),
            (
                "b".to_string(),
                vec!["chunk_4.ddd".into(), "chunk_3.ccc".into()],
            ),
        ]);
        let manifest = rewrite_manifest(&manifest, &pack_of, &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(manifest["a"], ["chunk_pack0.ppp", "split_a.x"]);
        assert_eq!(manifest["b"], ["chunk_4.ddd", "chunk_pack0.ppp"]);

        let unknown = HashMap::from([("chunk_9.zzz", "chunk_pack0.ppp".to_string())]);
        assert!(
            rewrite_loader(LOADER, &unknown).is_err(),
            "a chunk the loader lacks"
        );
    }

    #[test]
    fn the_common_pack_holds_widely_used_and_small_shared_chunks() {
        let routes = |chunks: &[&str]| chunks.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let manifest = BTreeMap::from([
            (
                "r1".to_string(),
                routes(&["chunk_1.a", "chunk_2.b", "chunk_3.c", "split_r1.x"]),
            ),
            (
                "r2".to_string(),
                routes(&["chunk_1.a", "chunk_2.b", "chunk_3.c"]),
            ),
            ("r3".to_string(), routes(&["chunk_1.a", "chunk_4.d"])),
            ("r4".to_string(), routes(&["chunk_1.a", "chunk_5.e"])),
        ]);
        let size = |chunk: &str| match chunk {
            "chunk_2.b" | "chunk_4.d" => 300,
            _ => 50_000,
        };
        // chunk_1: every route; chunk_2: two routes and small; chunk_3: two routes, large;
        // chunk_4: small but one route's own; chunk_5: one route's own.
        assert_eq!(plan_packs(&manifest, size), [["chunk_1.a", "chunk_2.b"]]);
        // Nothing to pack: no plan.
        let alone = BTreeMap::from([("r1".to_string(), routes(&["chunk_1.a"]))]);
        assert!(plan_packs(&alone, size).is_empty());
    }

    /// A chunk that writes memory: one active data segment, nothing else.
    fn chunk_with_data() -> Vec<u8> {
        let mut imports = ImportSection::new();
        let memory = MemoryType {
            minimum: 17,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        };
        imports.import("__wasm_split", "memory", EntityType::Memory(memory));
        let mut data = wasm_encoder::DataSection::new();
        data.active(0, &ConstExpr::i32_const(16), b"kept once".iter().copied());
        let mut module = Module::new();
        module.section(&imports);
        module.section(&data);
        module.finish()
    }

    /// One module's loading as wasm-split declares it (`file` without `.wasm`).
    fn loading(file: &str) -> String {
        format!(
            "makeLoad(() => {{\n    const src = fetch(new URL(\"./{file}.wasm\", import.meta.url));\n    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));\n}}\n"
        )
    }

    /// The loader of a bundle whose split point `a` needs chunks 1, 3, 5, 6 and 7 and `b`
    /// chunks 1 and 3, as wasm-split writes one.
    fn split_point_loader() -> String {
        let mut loader = "import { initSync } from \"./kyc-desk.JSOLD.js\";\n".to_string();
        for (n, hash) in [(1, "aaa"), (3, "ccc"), (5, "eee"), (6, "fff"), (7, "ggg")] {
            let load = loading(&format!("chunk_{n}.{hash}"));
            loader.push_str(&format!("const __chunk_{n} = {load}, []);\n"));
        }
        for (point, hash, deps) in [
            (
                "a",
                "xxx",
                "__chunk_1, __chunk_3, __chunk_5, __chunk_6, __chunk_7",
            ),
            ("b", "yyy", "__chunk_1, __chunk_3"),
        ] {
            let load = loading(&format!("split_{point}.{hash}"));
            loader.push_str(&format!(
                "export const __wasm_split_load_{point} = wrapAsyncCb({load}, [{deps}]));\n"
            ));
        }
        loader
    }

    #[test]
    fn each_split_point_loads_its_own_pack_and_a_chunk_with_data_stays_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path();
        std::fs::write(pkg.join("chunk_1.aaa.wasm"), chunk_a()).unwrap();
        std::fs::write(pkg.join("chunk_3.ccc.wasm"), chunk_b()).unwrap();
        std::fs::write(pkg.join("chunk_5.eee.wasm"), chunk_a()).unwrap();
        std::fs::write(pkg.join("chunk_6.fff.wasm"), chunk_b()).unwrap();
        std::fs::write(pkg.join("chunk_7.ggg.wasm"), chunk_with_data()).unwrap();
        std::fs::write(pkg.join("__wasm_split.SPLITOLD.js"), split_point_loader()).unwrap();
        let main_js = r#"import*as n from"./__wasm_split.SPLITOLD.js";"#;
        std::fs::write(pkg.join("kyc-desk.JSOLD.js"), main_js).unwrap();
        let manifest = r#"{"a":["chunk_1.aaa","chunk_3.ccc","chunk_5.eee","chunk_6.fff","chunk_7.ggg","split_a.xxx"],"b":["chunk_1.aaa","chunk_3.ccc","split_b.yyy"]}"#;
        std::fs::write(pkg.join("__wasm_split_manifest.MOLD.json"), manifest).unwrap();
        let hash_file = pkg.join("hash.txt");
        let hashes = "js: JSOLD\nwasm: W\ncss: C\nmanifest: MOLD\nsplit: SPLITOLD\n";
        std::fs::write(&hash_file, hashes).unwrap();

        // Chunks 1 and 3: both split points (small) → the common pack; 5 and 6: `a`'s own
        // pack; 7 writes memory → loaded alone, once.
        assert_eq!(
            pack_bundle(pkg, &hash_file, &as_merged).unwrap(),
            Packed::Done {
                chunks: 4,
                packs: 2
            }
        );
        let hash = |kind: &str| hash_of(&hash_file, kind);
        let manifest = manifest_of(pkg, &hash_file);
        let (common, own) = (&manifest["a"][0], &manifest["a"][1]);
        assert!(common.starts_with("chunk_pack0.") && own.starts_with("chunk_pack1."));
        assert_eq!(manifest["a"][2..], ["chunk_7.ggg", "split_a.xxx"]);
        assert_eq!(manifest["b"], [common.as_str(), "split_b.yyy"]);
        let own_pack = std::fs::read(pkg.join(format!("{own}.wasm"))).unwrap();
        assert_eq!(shape(&own_pack).functions, 4, "chunks 5 and 6");

        let loader =
            std::fs::read_to_string(pkg.join(format!("__wasm_split.{}.js", hash("split"))))
                .unwrap();
        assert!(
            loader.contains(&format!(
                "const __own_pack_0 = makeLoad(() => {{\n    const src = fetch(new URL(\"./{own}.wasm\""
            )),
            "{loader}"
        );
        assert!(
            loader.contains(", [__chunk_1, __own_pack_0, __chunk_7]));"),
            "a: the common pack, its own pack, the chunk with data: {loader}"
        );
        assert!(
            loader.contains(", [__chunk_1]));"),
            "b: the common pack: {loader}"
        );
        assert!(loader.contains(&format!("\"./{common}.wasm\"")));
        for gone in [
            "__chunk_3",
            "__chunk_5",
            "__chunk_6",
            "chunk_5.eee",
            "chunk_6.fff",
        ] {
            assert!(!contains_name(&loader, gone), "{gone} in {loader}");
        }
        assert!(loader.contains("const __chunk_7 = makeLoad("), "{loader}");
    }

    #[test]
    fn only_a_chunk_that_writes_constant_table_slots_and_no_memory_may_load_twice() {
        assert_eq!(may_load_twice(&chunk_a()), Ok(true));
        assert_eq!(may_load_twice(&chunk_with_data()), Ok(false));

        // Its functions go to the slot a global names: not known to be the same each time.
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut imports = ImportSection::new();
        let table = TableType {
            element_type: RefType::FUNCREF,
            minimum: 16,
            maximum: None,
            table64: false,
            shared: false,
        };
        imports.import("__wasm_split", "__indirect_function_table", table);
        imports.import("__wasm_split", "__wasm_split_shared0", shared_global(false));
        let mut functions = FunctionSection::new();
        functions.function(0);
        let mut elements = ElementSection::new();
        elements.active(
            None,
            &ConstExpr::global_get(0),
            Elements::Functions([0].as_slice().into()),
        );
        let mut code = CodeSection::new();
        let mut body = Function::new([]);
        body.instruction(&Instruction::End);
        code.function(&body);
        let mut module = Module::new();
        module.section(&types);
        module.section(&imports);
        module.section(&functions);
        module.section(&elements);
        module.section(&code);
        assert_eq!(may_load_twice(&module.finish()), Ok(false));
    }

    #[test]
    fn a_split_point_pack_holds_its_chunks_that_may_load_twice() {
        let manifest = BTreeMap::from([
            (
                "a".to_string(),
                vec![
                    "chunk_9.i".to_string(),
                    "chunk_2.b".into(),
                    "chunk_4.d".into(),
                    "split_a.x".into(),
                ],
            ),
            (
                "b".to_string(),
                vec!["chunk_2.b".to_string(), "chunk_8.h".into()],
            ),
            ("c".to_string(), vec!["chunk_2.b".to_string()]),
        ]);
        // chunk_4 writes memory (or is in the common pack): not in a split point's pack.
        let plan = plan_split_point_packs(&manifest, |chunk| chunk != "chunk_4.d");
        assert_eq!(
            plan,
            BTreeMap::from([
                (
                    "a".to_string(),
                    vec!["chunk_2.b".to_string(), "chunk_9.i".into()]
                ),
                (
                    "b".to_string(),
                    vec!["chunk_2.b".to_string(), "chunk_8.h".into()]
                ),
            ]),
            "in chunk order, the route's own module left out, one chunk alone not packed"
        );
    }

    /// A split, hashed bundle in `pkg` whose chunks 1 and 3 are packed (routes a and b share
    /// them); returns its hash file.
    fn packable_bundle(pkg: &Path) -> PathBuf {
        std::fs::write(pkg.join("chunk_1.aaa.wasm"), chunk_a()).unwrap();
        std::fs::write(pkg.join("chunk_3.ccc.wasm"), chunk_b()).unwrap();
        std::fs::write(pkg.join("chunk_4.ddd.wasm"), chunk_b()).unwrap();
        std::fs::write(pkg.join("__wasm_split.SPLITOLD.js"), LOADER).unwrap();
        let main_js = r#"import*as n from"./__wasm_split.SPLITOLD.js";const imports={"./__wasm_split.SPLITOLD.js":n};"#;
        std::fs::write(pkg.join("kyc-desk.JSOLD.js"), main_js).unwrap();
        let manifest = r#"{"a":["chunk_1.aaa","chunk_3.ccc"],"b":["chunk_1.aaa","chunk_3.ccc"],"c":["chunk_4.ddd"]}"#;
        std::fs::write(pkg.join("__wasm_split_manifest.MOLD.json"), manifest).unwrap();
        let hash_file = pkg.join("hash.txt");
        let hashes = "js: JSOLD\nwasm: W\ncss: C\nmanifest: MOLD\nsplit: SPLITOLD\n";
        std::fs::write(&hash_file, hashes).unwrap();
        hash_file
    }

    /// The name the hash file gives to `kind` (`js`, `split`, `manifest`, …).
    fn hash_of(hash_file: &Path, kind: &str) -> String {
        std::fs::read_to_string(hash_file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{kind}: ")).map(str::to_string))
            .unwrap()
    }

    /// The manifest the hash file names.
    fn manifest_of(pkg: &Path, hash_file: &Path) -> BTreeMap<String, Vec<String>> {
        let name = format!(
            "__wasm_split_manifest.{}.json",
            hash_of(hash_file, "manifest")
        );
        serde_json::from_str(&std::fs::read_to_string(pkg.join(name)).unwrap()).unwrap()
    }

    /// The pack file named in the manifest the hash file names.
    fn written_pack(pkg: &Path, hash_file: &Path) -> Vec<u8> {
        let manifest = manifest_of(pkg, hash_file);
        std::fs::read(pkg.join(format!("{}.wasm", manifest["a"][0]))).unwrap()
    }

    #[test]
    fn a_pack_is_written_as_the_optimiser_returns_it_and_an_invalid_one_stops_the_packing() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path();
        let hash_file = packable_bundle(pkg);
        let before = std::fs::read_to_string(&hash_file).unwrap();
        let broken = |_: &[u8]| Ok(b"\0asm not a module".to_vec());
        let error = pack_bundle(pkg, &hash_file, &broken).unwrap_err();
        assert!(
            error.to_string().contains("optimised pack is not valid"),
            "{error}"
        );
        let failing = |_: &[u8]| Err("wasm-opt failed (exit status: 1)".to_string());
        let error = pack_bundle(pkg, &hash_file, &failing).unwrap_err();
        assert!(error.to_string().contains("wasm-opt failed"), "{error}");
        assert_eq!(
            std::fs::read_to_string(&hash_file).unwrap(),
            before,
            "nothing written"
        );

        // The optimiser sees the merged chunks (four functions) and its answer is the pack.
        let seen = std::sync::Mutex::new(0);
        let smaller = |merged: &[u8]| {
            *seen.lock().unwrap() = shape(merged).functions;
            Ok(chunk_a())
        };
        assert!(matches!(
            pack_bundle(pkg, &hash_file, &smaller),
            Ok(Packed::Done { .. })
        ));
        assert_eq!(*seen.lock().unwrap(), 4);
        assert_eq!(written_pack(pkg, &hash_file), chunk_a());
    }

    #[test]
    fn a_bundle_is_packed_once_and_the_hash_file_names_the_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path();
        let hash_file = packable_bundle(pkg);

        let packed = pack_bundle(pkg, &hash_file, &as_merged).unwrap();
        assert_eq!(
            packed,
            Packed::Done {
                chunks: 2,
                packs: 1
            }
        );

        let hash = |kind: &str| hash_of(&hash_file, kind);
        assert_eq!(hash("wasm"), "W");
        assert_eq!(hash("js"), hash("split"), "the pair is named by one hash");
        assert_ne!(hash("js"), "JSOLD");
        assert!(
            crate::server::web::assets::AssetNames::parse(
                &std::fs::read_to_string(&hash_file).unwrap()
            )
            .is_some()
        );
        let main =
            std::fs::read_to_string(pkg.join(format!("kyc-desk.{}.js", hash("js")))).unwrap();
        assert!(main.contains(&format!(r#"from"./__wasm_split.{}.js""#, hash("split"))));
        assert!(
            main.contains(r#"{"./__wasm_split.SPLITOLD.js":n}"#),
            "the import keys stay"
        );
        let loader =
            std::fs::read_to_string(pkg.join(format!("__wasm_split.{}.js", hash("split"))))
                .unwrap();
        assert!(loader.contains(&format!("./kyc-desk.{}.js", hash("js"))));
        let manifest = manifest_of(pkg, &hash_file);
        let pack = &manifest["a"][0];
        assert!(pack.starts_with("chunk_pack0."), "{manifest:?}");
        assert_eq!(manifest["b"].as_slice(), std::slice::from_ref(pack));
        assert_eq!(manifest["c"], ["chunk_4.ddd"]);
        for ext in ["wasm", "wasm.br", "wasm.gz"] {
            assert!(pkg.join(format!("{pack}.{ext}")).exists(), "{pack}.{ext}");
        }
        let merged = std::fs::read(pkg.join(format!("{pack}.wasm"))).unwrap();
        assert_eq!(shape(&merged).functions, 4);

        // Again: the bundle is already packed, and nothing changes.
        let before = std::fs::read_to_string(&hash_file).unwrap();
        assert!(matches!(
            pack_bundle(pkg, &hash_file, &as_merged).unwrap(),
            Packed::Unchanged(_)
        ));
        assert_eq!(std::fs::read_to_string(&hash_file).unwrap(), before);
    }
}
