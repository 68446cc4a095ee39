//! The served model as one file per cluster and model version, mapped read-only by every
//! backend: one physical copy in the page cache instead of one decoded copy per connection, and
//! a first call that maps a file instead of reading and decoding the model's rows.
//!
//! `$PGDATA/pg_recsys/images/<database>_<model table>_<id>_<created>.img` is written by the first
//! backend that serves the version (from the stored rows, decoded and checked as before): to a
//! temporary file, fsynced, then renamed, so a reader sees a complete image or none; two
//! backends racing write the same bytes. It is a cache of committed rows: a standby builds its
//! own from the replayed rows, a missing or unreadable image is rebuilt, and images of versions
//! no longer stored are removed when a new one is written. Explicit-mode models (whose rating
//! model is not imaged yet) are served from private memory as before.
//!
//! Layout: a header (magic, section count), a table of sections (name, offset, length), and the
//! sections, each 64-byte aligned, values in native byte order (an image never leaves the
//! machine that wrote it; the magic records the byte order).
use crate::error::{RecsysError, Result};
use crate::store::serving::{Content, Data, ModelKey, Tables};
use recsys_core::buf::{as_bytes, Buf, Plain};
use recsys_core::ids::{IdIndex, IdLists, RowMap};
use recsys_core::tfidf::{Tfidf, Vocab};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = if cfg!(target_endian = "little") { b"RSYSIMGl" } else { b"RSYSIMGb" };
const VERSION: u32 = 1;
const ALIGN: usize = 64;
const NAME: usize = 40;
const ENTRY: usize = NAME + 16;

/// A read-only mapping of an image file (unmapped when the last borrower drops it).
pub struct Image {
    ptr: *mut libc::c_void,
    len: usize,
    sections: HashMap<String, (usize, usize)>,
}

// SAFETY: the mapping is read-only (PROT_READ) and private to this struct; nothing writes it.
unsafe impl Send for Image {}
// SAFETY: as above: shared reads only.
unsafe impl Sync for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped once, here.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn corrupt(path: &Path, what: &str) -> RecsysError {
    RecsysError::Corrupt(format!("model image {}: {what}", path.display()))
}

/// Where the image of a model version lives.
pub fn path(key: ModelKey) -> PathBuf {
    // SAFETY: DataDir is set at postmaster start and MyDatabaseId at backend start; plain
    // reads on the backend thread.
    let (data, db) = unsafe { (std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir).to_string_lossy().into_owned(), pgrx::pg_sys::MyDatabaseId.to_u32()) };
    PathBuf::from(data).join("pg_recsys").join("images").join(format!("{db}_{}_{}_{}.img", key.table, key.id, key.created_us))
}

impl Image {
    /// Maps an image; Ok(None) when there is none.
    pub fn open(path: &Path) -> Result<Option<Arc<Image>>> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt(path, &e.to_string())),
        };
        let len = file.metadata().map_err(|e| corrupt(path, &e.to_string()))?.len() as usize;
        if len < 16 {
            return Err(corrupt(path, "too short"));
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a read-only shared mapping of a whole regular file we just opened.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(corrupt(path, &std::io::Error::last_os_error().to_string()));
        }
        let mut img = Image { ptr, len, sections: HashMap::new() };
        let bytes = img.bytes();
        if &bytes[..8] != MAGIC || u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes")) != VERSION {
            return Err(corrupt(path, "not an image of this build"));
        }
        let n = u32::from_ne_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        let table_end =
            n.checked_mul(ENTRY).and_then(|t| t.checked_add(16)).filter(|&e| e <= len).ok_or_else(|| corrupt(path, "section table out of range"))?;
        let mut sections = HashMap::with_capacity(n);
        for e in bytes[16..table_end].chunks_exact(ENTRY) {
            let name = std::str::from_utf8(&e[..NAME]).map_err(|_| corrupt(path, "section name"))?.trim_end_matches('\0').to_string();
            let off = u64::from_ne_bytes(e[NAME..NAME + 8].try_into().expect("8 bytes")) as usize;
            let size = u64::from_ne_bytes(e[NAME + 8..NAME + 16].try_into().expect("8 bytes")) as usize;
            if off.checked_add(size).is_none_or(|end| end > len) || !off.is_multiple_of(ALIGN) {
                return Err(corrupt(path, &format!("section {name} out of range")));
            }
            sections.insert(name, (off, size));
        }
        img.sections = sections;
        Ok(Some(Arc::new(img)))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    /// Section `name` as T values, borrowed from the mapping (None when absent).
    fn get<T: Plain>(self: &Arc<Self>, name: &str) -> Result<Option<Buf<T>>> {
        let Some(&(off, size)) = self.sections.get(name) else { return Ok(None) };
        let w = std::mem::size_of::<T>();
        if size % w != 0 {
            return Err(RecsysError::Corrupt(format!("model image section {name} is not a whole number of values")));
        }
        // SAFETY: off + size is within the mapping (checked at open), off is 64-byte aligned
        // (so aligned for T), the mapping is read-only and lives as long as the Arc we keep.
        let b = unsafe { Buf::borrowed((self.ptr as *const u8).add(off) as *const T, size / w, self.clone() as Arc<dyn Send + Sync>) };
        Ok(Some(b))
    }

    fn need<T: Plain>(self: &Arc<Self>, name: &str) -> Result<Buf<T>> {
        self.get(name)?.ok_or_else(|| RecsysError::Corrupt(format!("model image has no section {name}")))
    }

    /// A scalar section that older images lack: None when absent (or empty).
    fn optional_scalar(self: &Arc<Self>, name: &str) -> Result<Option<u64>> {
        Ok(self.get::<u64>(name)?.and_then(|v| v.first().copied()))
    }

    fn scalar(self: &Arc<Self>, name: &str) -> Result<u64> {
        self.need::<u64>(name)?.first().copied().ok_or_else(|| RecsysError::Corrupt(format!("model image section {name} is empty")))
    }
}

/// Sections of an image being written: (name, bytes).
struct Sections<'a>(Vec<(String, std::borrow::Cow<'a, [u8]>)>);

impl<'a> Sections<'a> {
    fn add<T: Plain>(&mut self, name: &str, v: &'a [T]) {
        self.0.push((name.to_string(), std::borrow::Cow::Borrowed(as_bytes(v))));
    }
    fn own(&mut self, name: &str, v: Vec<u8>) {
        self.0.push((name.to_string(), std::borrow::Cow::Owned(v)));
    }
    fn scalar(&mut self, name: &str, x: u64) {
        self.own(name, x.to_ne_bytes().to_vec());
    }
    fn index(&mut self, name: &str, ix: &'a IdIndex) {
        let (ids, values) = ix.parts();
        self.add(&format!("{name}.ids"), ids);
        self.add(&format!("{name}.values"), values);
        // Absent in older images: their indexes read `values` at every lookup.
        if ix.is_identity() {
            self.scalar(&format!("{name}.identity"), 1);
        }
    }
    fn csr(&mut self, name: &str, m: &'a recsys_core::csr::Csr) {
        self.scalar(&format!("{name}.rows"), m.rows as u64);
        self.scalar(&format!("{name}.cols"), m.cols as u64);
        self.add(&format!("{name}.indptr"), &m.indptr);
        self.add(&format!("{name}.indices"), &m.indices);
        self.add(&format!("{name}.data"), &m.data);
    }
    /// The content model's sections.
    fn content(&mut self, c: &'a Content) -> std::io::Result<()> {
        self.add("content.ids", &c.ids);
        self.index("content.index", &c.index);
        self.own("content.to_item", as_bytes(&c.to_item.iter().map(|x| x.unwrap_or(u32::MAX)).collect::<Vec<u32>>()).to_vec());
        // The map's compact form, so that a reader need not scan the table to find it (older
        // images: scanned).
        if let RowMap::Prefix { mapped, len } = &c.to_item {
            self.scalar("content.to_item.prefix", *mapped as u64);
            debug_assert_eq!(*len, c.ids.len());
        }
        self.add("content.attrs", &c.attrs);
        self.own("content.dict", serde_json::to_vec(&c.dict_list).map_err(std::io::Error::other)?);
        let (blob, offsets, sorted) = c.tfidf.vocab.pack();
        self.own("vocab.blob", blob);
        self.own("vocab.offsets", as_bytes(&offsets).to_vec());
        self.own("vocab.sorted", as_bytes(&sorted).to_vec());
        self.add("idf", &c.tfidf.idf);
        self.csr("docs", &c.tfidf.docs);
        self.csr("postings", &c.tfidf.postings);
        Ok(())
    }
}

/// Writes the image of `d` at `path` (temporary file, fsync, rename). Ids added to the data
/// after it was decoded (posts created after training) are not in it: images are written from
/// freshly decoded data only. `options` are the version's stored options, kept so that a new
/// connection need not convert them from the row's jsonb.
pub fn write(path: &Path, d: &Data, tables: &Tables, options: &crate::options::TrainOptions) -> std::io::Result<()> {
    let mut s = Sections(vec![]);
    s.own("tables", serde_json::to_vec(tables).map_err(std::io::Error::other)?);
    s.own("options", serde_json::to_vec(options).map_err(std::io::Error::other)?);
    s.scalar("factors", d.factors as u64);
    s.scalar("interacted_items", d.interacted_items as u64);
    s.own("newest_day", d.newest_day.to_ne_bytes().to_vec());
    s.add("item_ids", &d.item_ids);
    s.index("item_index", &d.item_index);
    s.add("item_factors", &d.item_factors);
    s.add("item_norms", &d.item_norms);
    s.add("popularity", &d.popularity);
    s.add("gram", &d.gram);
    s.add("popularity_order", &d.popularity_order);
    s.add("freshness", &d.freshness);
    s.add("owners", &d.owners);
    let (ids, ptr, items) = d.owned.parts();
    s.add("owned.ids", ids);
    s.add("owned.ptr", ptr);
    s.add("owned.items", items);
    s.index("followers", &d.followers);
    // Packed, so a connection reads only its users' lists (images before this held one JSON
    // section, "segments", still read).
    let (index, items, scores) = d.segments.all().pack();
    s.own("segments.index", serde_json::to_vec(&index).map_err(std::io::Error::other)?);
    s.own("segments.items", as_bytes(&items).to_vec());
    s.own("segments.scores", as_bytes(&scores).to_vec());
    if let Some(q) = &d.quantized {
        s.scalar("quantized.f", q.f as u64);
        s.add("quantized.data", &q.data);
        s.add("quantized.scale", &q.scale);
    }
    if let Some(p) = &d.ivf {
        s.scalar("ivf.items", p.items as u64);
        s.add("ivf.centroids", &p.centroids);
        s.add("ivf.radius", &p.radius);
        s.add("ivf.order", &p.order);
        s.add("ivf.offsets", &p.offsets);
        if let Some(d) = &p.dist {
            s.add("ivf.dist", d);
        }
        // The members' rows in cluster order (a second copy of the post factors, shared like
        // the rest of the image): a walk reads each visited cluster as one contiguous run.
        match &p.rows {
            Some(r) => s.add("ivf.rows", r),
            None => s.own("ivf.rows", as_bytes(&p.member_rows(&d.item_factors)).to_vec()),
        }
        // Each covered post's cluster, derived once here rather than by every backend on its
        // first call (absent in older images: derived then).
        s.add("ivf.clusters", p.clusters_of_rows());
    }
    if let Some(g) = &d.graph {
        s.scalar("graph.items", g.items as u64);
        s.add("graph.ptr", &g.ptr);
        s.add("graph.nbr", &g.nbr);
        s.add("graph.weight", &g.weight);
    }
    if let Some(c) = &d.content {
        s.content(c)?;
    }
    write_sections(path, &s)
}

/// Writes `s` as an image file at `path`: header, section table, aligned sections; to a
/// temporary file first (fsync, rename), so a reader never maps a half-written image.
fn write_sections(path: &Path, s: &Sections) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no directory"))?;
    std::fs::create_dir_all(dir)?;
    // SAFETY: reads the backend's pid.
    let tmp = path.with_extension(format!("tmp{}", unsafe { pgrx::pg_sys::MyProcPid }));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let n = s.0.len();
    let mut off = (16 + n * ENTRY).div_ceil(ALIGN) * ALIGN;
    let mut table = Vec::with_capacity(n * ENTRY);
    for (name, bytes) in &s.0 {
        let mut e = [0u8; NAME];
        let nb = name.as_bytes();
        if nb.len() > NAME {
            return Err(std::io::Error::other(format!("section name {name} too long")));
        }
        e[..nb.len()].copy_from_slice(nb);
        table.extend_from_slice(&e);
        table.extend_from_slice(&(off as u64).to_ne_bytes());
        table.extend_from_slice(&(bytes.len() as u64).to_ne_bytes());
        off = (off + bytes.len()).div_ceil(ALIGN) * ALIGN;
    }
    f.write_all(MAGIC)?;
    f.write_all(&VERSION.to_ne_bytes())?;
    f.write_all(&(n as u32).to_ne_bytes())?;
    f.write_all(&table)?;
    let mut pos = 16 + table.len();
    for (_, bytes) in &s.0 {
        let pad = pos.div_ceil(ALIGN) * ALIGN - pos;
        f.write_all(&[0u8; ALIGN][..pad])?;
        f.write_all(bytes)?;
        pos += pad + bytes.len();
    }
    let file = f.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The data of an image, every array borrowed from the mapping; sizes checked as the stored
/// parts are.
pub fn read(img: &Arc<Image>, id: i64) -> Result<Data> {
    let bad = |what: &str| RecsysError::Corrupt(format!("model image of {id}: {what}"));
    let factors = img.scalar("factors")? as usize;
    let item_ids: Buf<i64> = img.need("item_ids")?;
    let n = item_ids.len();
    let index = |name: &str| -> Result<IdIndex> {
        let identity = img.optional_scalar(&format!("{name}.identity"))? == Some(1);
        IdIndex::from_written_parts(img.need(&format!("{name}.ids"))?, img.need(&format!("{name}.values"))?, identity).ok_or_else(|| bad(name))
    };
    let item_index = index("item_index")?;
    let item_factors: Buf<f32> = img.need("item_factors")?;
    let item_norms: Buf<f32> = img.need("item_norms")?;
    let popularity: Buf<f32> = img.need("popularity")?;
    let gram: Buf<f32> = img.need("gram")?;
    let popularity_order: Buf<u32> = img.need("popularity_order")?;
    let freshness: Buf<f32> = img.need("freshness")?;
    let owners: Buf<i64> = img.need("owners")?;
    let sizes_bad = !(1..=1024).contains(&factors)
        || item_factors.len() != n.saturating_mul(factors)
        || item_norms.len() != n
        || popularity.len() != n
        || gram.len() != factors * factors
        || popularity_order.len() != n
        || (!freshness.is_empty() && freshness.len() != n)
        || (!owners.is_empty() && owners.len() != n);
    if sizes_bad {
        return Err(bad("arrays have inconsistent sizes"));
    }
    let owned = IdLists::from_written_parts(img.need("owned.ids")?, img.need("owned.ptr")?, img.need("owned.items")?).ok_or_else(|| bad("owned"))?;
    let followers = index("followers")?;
    use crate::store::serving::{LazySegments, PackedSegments};
    let segments = match img.get::<u8>("segments.index")? {
        Some(index) => LazySegments::Packed(PackedSegments::new(index, img.need("segments.items")?, img.need("segments.scores")?, n)),
        None => LazySegments::raw(img.need::<u8>("segments")?, n),
    };
    let quantized = match img.get::<u64>("quantized.f")? {
        None => None,
        Some(_) => Some(recsys_core::kernels::QuantizedRows {
            f: img.scalar("quantized.f")? as usize,
            data: img.need("quantized.data")?,
            scale: img.need("quantized.scale")?,
        }),
    };
    let graph = match img.get::<u64>("graph.items")? {
        None => None,
        Some(_) => Some(
            recsys_core::graph::ItemGraph::from_written_parts(
                img.scalar("graph.items")? as usize,
                img.need("graph.ptr")?,
                img.need("graph.nbr")?,
                img.need("graph.weight")?,
            )
            .map_err(|e| bad(&e.to_string()))?,
        ),
    };
    let content = read_content(img, id, n, &index)?;
    let ivf = read_ivf(img, id, factors, n)?;
    let newest = img.need::<f32>("newest_day")?;
    Ok(Data {
        factors,
        item_ids,
        item_index,
        item_factors,
        item_norms,
        popularity,
        gram,
        content,
        quantized,
        popularity_order,
        interacted_items: (img.scalar("interacted_items")? as usize).min(n),
        freshness,
        newest_day: newest.first().copied().unwrap_or(f32::NAN),
        owned,
        owners,
        followers,
        segments,
        graph,
        ivf,
    })
}

/// The partition of an image's post factors (None: none stored).
fn read_ivf(img: &Arc<Image>, id: i64, factors: usize, n: usize) -> Result<Option<recsys_core::ivf::Ivf>> {
    if img.get::<u64>("ivf.items")?.is_none() {
        return Ok(None);
    }
    let p = recsys_core::ivf::Ivf::from_parts(
        factors,
        img.scalar("ivf.items")? as usize,
        img.need("ivf.centroids")?,
        img.need("ivf.radius")?,
        img.need("ivf.order")?,
        img.need("ivf.offsets")?,
        img.get("ivf.dist")?,
    );
    let p = match img.get::<f32>("ivf.rows")? {
        Some(rows) => p.with_rows(rows),
        None => p,
    };
    let p = match img.get::<u16>("ivf.clusters")? {
        Some(of) => p.with_clusters_of_rows(of),
        None => p,
    };
    match p.has_consistent_sizes(n) {
        true => Ok(Some(p)),
        false => Err(RecsysError::Corrupt(format!("model image of {id}: the post partition has inconsistent sizes"))),
    }
}

/// The content model of an image (None when trained without a posts table).
fn read_content(img: &Arc<Image>, id: i64, n: usize, index: &dyn Fn(&str) -> Result<IdIndex>) -> Result<Option<Content>> {
    let bad = |what: &str| RecsysError::Corrupt(format!("model image of {id}: {what}"));
    Ok(match img.get::<i64>("content.ids")? {
        None => None,
        Some(ids) => {
            let docs = csr(img, id, "docs")?;
            let postings = csr(img, id, "postings")?;
            let vocab =
                Vocab::packed_written(img.need("vocab.blob")?, img.need("vocab.offsets")?, img.need("vocab.sorted")?).ok_or_else(|| bad("vocabulary"))?;
            let idf: Buf<f32> = img.need("idf")?;
            if docs.rows != ids.len() || docs.cols != vocab.len() || idf.len() != vocab.len() || postings.rows != docs.cols || postings.cols != docs.rows {
                return Err(bad("content arrays have inconsistent sizes"));
            }
            let raw: Buf<u32> = img.need("content.to_item")?;
            let to_item = match img.optional_scalar("content.to_item.prefix")? {
                Some(mapped) if mapped as usize <= n.min(raw.len()) => RowMap::Prefix { mapped: mapped as usize, len: raw.len() },
                _ => RowMap::collect(raw.iter().map(|&i| (i != u32::MAX && (i as usize) < n).then_some(i))),
            };
            let from_item = to_item.inverse(n);
            let dict_list: Vec<String> = serde_json::from_slice(&img.need::<u8>("content.dict")?).map_err(|e| bad(&e.to_string()))?;
            let dict = dict_list.iter().enumerate().skip(1).map(|(i, v)| (v.clone(), i as u32)).collect();
            let attrs: Buf<u32> = img.need("content.attrs")?;
            if to_item.len() != ids.len() || attrs.len() != ids.len() * 3 {
                return Err(bad("content arrays have inconsistent sizes"));
            }
            Some(Content { index: index("content.index")?, ids, tfidf: Tfidf { vocab, idf, docs, postings }, to_item, from_item, attrs, dict, dict_list })
        }
    })
}

/// A CSR matrix of an image, its structure checked.
fn csr(img: &Arc<Image>, id: i64, name: &str) -> Result<recsys_core::csr::Csr> {
    let m = recsys_core::csr::Csr {
        rows: img.scalar(&format!("{name}.rows"))? as usize,
        cols: img.scalar(&format!("{name}.cols"))? as usize,
        indptr: img.need(&format!("{name}.indptr"))?,
        indices: img.need(&format!("{name}.indices"))?,
        data: img.need(&format!("{name}.data"))?,
    };
    // Ends only, as the other written parts (opening touches no row): a decreasing pointer
    // makes a row's slice fail with a panic, never read out of bounds.
    let ok = m.indptr.len() == m.rows + 1 && m.indptr[0] == 0 && m.indptr[m.rows] == m.indices.len() && m.indices.len() == m.data.len();
    ok.then_some(m).ok_or_else(|| RecsysError::Corrupt(format!("model image of {id}: {name}")))
}

/// The resolved tables stored with the image (None: an image without them).
pub fn tables(img: &Arc<Image>) -> Result<Option<Tables>> {
    match img.get::<u8>("tables")? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| RecsysError::Corrupt(format!("model image tables: {e}"))),
    }
}

/// The stored options the image was written with; None for an image written before they were
/// kept, or when they no longer parse (the row's are read instead).
pub fn options(img: &Arc<Image>) -> Option<crate::options::TrainOptions> {
    serde_json::from_slice(&img.get::<u8>("options").ok()??).ok()
}

/// Removes the images of this database's model table whose version is not in `keep`.
pub fn remove_others(key: ModelKey, keep: &[i64]) {
    let p = path(key);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else { return };
    let prefix: String = name.split('_').take(2).collect::<Vec<_>>().join("_") + "_";
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = n.strip_prefix(&prefix) else { continue };
        let id = rest.split('_').next().and_then(|x| x.parse::<i64>().ok());
        if n.ends_with(".img") && id.is_some_and(|id| !keep.contains(&id)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
