//! Markdown (local descriptions) ↔ HTML (Plane's `description_html`).
//!
//! Outgoing Markdown is rendered by pulldown-cmark with raw HTML shown as text and unsafe links
//! dropped. Incoming HTML goes through a small tolerant parser into a block model that is written
//! back as Markdown. Every line of inline Markdown is read back before it is accepted and is
//! simplified until it reads back as exactly what it encodes, so one round trip is a fixed point.

use std::rc::Rc;

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

/// Deepest element nesting the HTML parser keeps; deeper tags are ignored, their text kept.
const MAX_DEPTH: usize = 64;
/// Deepest quote/list nesting written back, well under `MAX_DEPTH` so that re-rendered Markdown
/// never reaches the parser's cap and changes shape on the next round.
const MAX_CONTAINERS: usize = 16;
/// Most cells a table may have once padded to a rectangle.
const MAX_TABLE_CELLS: usize = 10_000;
/// CommonMark list numbers have at most nine digits.
const MAX_LIST_NUMBER: u64 = 999_999_999;

/// Markdown → HTML for Plane. Raw HTML in the markdown is escaped (shown as text), never passed through;
/// link URLs other than http:, https:, mailto: and relative ones are dropped (text kept). Empty/blank input → "" .
pub fn markdown_to_html(markdown: &str) -> String {
    let clean: String = markdown.chars().filter(|&c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')).collect();
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS | Options::ENABLE_TABLES;
    let mut events = Vec::new();
    let mut kept_links = Vec::new(); // for each open link or image: whether its tags are kept
    let mut raw_block: Option<String> = None;
    for event in Parser::new_ext(&clean, options) {
        match event {
            Event::Start(Tag::HtmlBlock) => raw_block = Some(String::new()),
            Event::End(TagEnd::HtmlBlock) => push_as_paragraph(&mut events, &raw_block.take().unwrap_or_default()),
            Event::Html(text) | Event::InlineHtml(text) => match raw_block.as_mut() {
                Some(block) => block.push_str(&text),
                None => events.push(Event::Text(text)),
            },
            Event::Start(Tag::Link { ref dest_url, .. } | Tag::Image { ref dest_url, .. }) => {
                let safe = is_safe_url(dest_url);
                kept_links.push(safe);
                if safe {
                    events.push(event);
                }
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if kept_links.pop().unwrap_or(true) {
                    events.push(event);
                }
            }
            other => events.push(other),
        }
    }
    let mut out = String::new();
    html::push_html(&mut out, events.into_iter());
    out.truncate(out.trim_end().len());
    out
}

/// A raw HTML block becomes a paragraph showing its lines as text.
fn push_as_paragraph(events: &mut Vec<Event<'_>>, raw: &str) {
    if raw.trim().is_empty() {
        return;
    }
    events.push(Event::Start(Tag::Paragraph));
    for (index, line) in raw.trim_end().lines().enumerate() {
        if index > 0 {
            events.push(Event::HardBreak);
        }
        events.push(Event::Text(CowStr::from(line.to_owned())));
    }
    events.push(Event::End(TagEnd::Paragraph));
}

/// HTML (as Plane returns it) → Markdown for the local description. Tolerant of any input (malformed, unclosed tags,
/// unknown tags, attributes in any quoting, entities named/decimal/hex, comments, <script>/<style> whose content is dropped).
pub fn html_to_markdown(html: &str) -> String {
    let markdown = render_blocks(&parse_blocks(html), "\n\n");
    // Already free of control characters by construction; this keeps it so for the terminal.
    let safe: String = markdown.chars().filter(|&c| c == '\n' || !c.is_control()).collect();
    safe.trim().to_owned()
}

/// Percent-encodes what pulldown-cmark would, so a URL survives a round trip unchanged.
fn normalize_url(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.trim().bytes().filter(|b| !matches!(b, b'\t' | b'\n' | b'\r')) {
        if byte.is_ascii_alphanumeric() || b"!#$%&'()*+,-./:;=?@^_~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn is_safe_url(url: &str) -> bool {
    // Browsers drop tabs and newlines anywhere in a URL, so "java\tscript:" is a scheme too.
    let url = normalize_url(url);
    let scheme_len = url.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')));
    match scheme_len {
        Some(len) if len > 0 && url[len..].starts_with(':') && url.starts_with(|c: char| c.is_ascii_alphabetic()) => {
            matches!(url[..len].to_ascii_lowercase().as_str(), "http" | "https" | "mailto")
        }
        _ => true, // no scheme: a relative reference
    }
}

#[derive(Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

enum Node {
    Text(String),
    Element(Element),
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }
}

#[rustfmt::skip]
const BLOCK_TAGS: &[&str] = &[
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr",
    "html", "li", "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "ul",
];
const VOID_TAGS: &[&str] =
    &["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

fn is_block(name: &str) -> bool {
    BLOCK_TAGS.contains(&name)
}

/// Elements whose content is never shown (script and style content is already skipped by the tokenizer).
fn is_hidden(name: &str) -> bool {
    matches!(name, "head" | "template" | "script" | "style" | "title")
}

#[derive(Default)]
struct TreeBuilder {
    root: Element,
    open: Vec<Element>,
    ignored: usize, // start tags past MAX_DEPTH still waiting for their end tags
}

impl TreeBuilder {
    fn current(&mut self) -> &mut Element {
        match self.open.last_mut() {
            Some(element) => element,
            None => &mut self.root,
        }
    }

    fn text(&mut self, text: String) {
        let children = &mut self.current().children;
        match children.last_mut() {
            Some(Node::Text(last)) => last.push_str(&text),
            _ if text.is_empty() => {}
            _ => children.push(Node::Text(text)),
        }
    }

    fn close_to(&mut self, index: usize) {
        while self.open.len() > index {
            if let Some(element) = self.open.pop() {
                self.current().children.push(Node::Element(element));
            }
        }
    }

    fn find_open(&self, target: impl Fn(&str) -> bool, boundary: impl Fn(&str) -> bool) -> Option<usize> {
        for (index, element) in self.open.iter().enumerate().rev() {
            if target(&element.name) {
                return Some(index);
            }
            if boundary(&element.name) {
                return None;
            }
        }
        None
    }

    fn start(&mut self, element: Element, self_closing: bool) {
        let name = element.name.as_str();
        // The implied end tags that hand-written markup relies on.
        let implied = match name {
            "li" => self.find_open(|n| n == "li", |n| matches!(n, "ul" | "ol")),
            "tr" => self.find_open(|n| n == "tr", |n| n == "table"),
            "td" | "th" => self.find_open(|n| matches!(n, "td" | "th"), |n| matches!(n, "tr" | "table")),
            _ if is_block(name) => self.find_open(|n| n == "p", is_block),
            _ => None,
        };
        if let Some(index) = implied {
            self.close_to(index);
        }
        if self_closing || VOID_TAGS.contains(&name) {
            self.current().children.push(Node::Element(element));
        } else if self.open.len() >= MAX_DEPTH {
            self.ignored += 1;
        } else {
            self.open.push(element);
        }
    }

    fn end(&mut self, name: &str) {
        if name == "br" {
            // Browsers read </br> as <br>.
            return self.start(Element { name: name.to_owned(), ..Element::default() }, true);
        }
        if VOID_TAGS.contains(&name) {
        } else if self.ignored > 0 {
            self.ignored -= 1;
        } else if let Some(index) = self.open.iter().rposition(|element| element.name == name) {
            self.close_to(index);
        }
    }
}

fn parse_html(html: &str) -> Element {
    let bytes = html.as_bytes();
    let mut tree = TreeBuilder::default();
    let mut pos = 0;
    while pos < html.len() {
        let Some(lt) = html[pos..].find('<').map(|offset| pos + offset) else {
            tree.text(decode_text(&html[pos..]));
            break;
        };
        tree.text(decode_text(&html[pos..lt]));
        let next = bytes.get(lt + 1).copied().unwrap_or(b' ');
        let closing_name = next == b'/' && bytes.get(lt + 2).is_some_and(u8::is_ascii_alphabetic);
        pos = if html[lt..].starts_with("<!--") {
            html[lt + 4..].find("-->").map_or(html.len(), |offset| lt + 4 + offset + 3)
        } else if closing_name {
            let (name, after) = read_name(html, lt + 2);
            tree.end(&name);
            skip_past_gt(html, after)
        } else if matches!(next, b'!' | b'?' | b'/') {
            skip_past_gt(html, lt) // doctype, processing instruction or bogus comment
        } else if let Some((element, self_closing, after)) =
            next.is_ascii_alphabetic().then(|| read_start_tag(html, lt + 1)).flatten()
        {
            if matches!(element.name.as_str(), "script" | "style" | "title") && !self_closing {
                let end_tag = format!("</{}", element.name);
                find_ignoring_case(html, after, &end_tag).map_or(html.len(), |end| skip_past_gt(html, end))
            } else {
                tree.start(element, self_closing);
                after
            }
        } else if next.is_ascii_alphabetic() {
            // The input ends inside this tag; show the rest rather than rescanning it for every '<'.
            tree.text(decode_text(&html[lt..]));
            html.len()
        } else {
            tree.text("<".to_owned()); // a stray '<' is text
            lt + 1
        };
    }
    tree.close_to(0);
    tree.root
}

fn skip_past_gt(html: &str, from: usize) -> usize {
    html[from..].find('>').map_or(html.len(), |offset| from + offset + 1)
}

fn find_ignoring_case(haystack: &str, from: usize, needle: &str) -> Option<usize> {
    let window = needle.len();
    haystack.as_bytes()[from..]
        .windows(window)
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        .map(|i| from + i)
}

fn read_name(html: &str, from: usize) -> (String, usize) {
    let len = html[from..].bytes().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_')).count();
    (html[from..from + len].to_ascii_lowercase(), from + len)
}

fn skip_whitespace(html: &str, from: usize) -> usize {
    from + html[from..].bytes().take_while(u8::is_ascii_whitespace).count()
}

/// Reads a start tag after its '<'; `None` when the input ends inside it.
fn read_start_tag(html: &str, from: usize) -> Option<(Element, bool, usize)> {
    let bytes = html.as_bytes();
    let (name, mut pos) = read_name(html, from);
    let mut element = Element { name, ..Element::default() };
    loop {
        match *bytes.get(pos)? {
            b'>' => return Some((element, bytes[pos - 1] == b'/', pos + 1)),
            b'/' => pos += 1,
            byte if byte.is_ascii_whitespace() => pos += 1,
            _ => {
                let first = html[pos..].chars().next()?.len_utf8();
                let name_end = html[pos + first..]
                    .find(|c: char| c.is_ascii_whitespace() || matches!(c, '/' | '>' | '='))
                    .map_or(html.len(), |offset| pos + first + offset);
                let key = html[pos..name_end].to_ascii_lowercase();
                pos = skip_whitespace(html, name_end);
                let mut value = String::new();
                if bytes.get(pos) == Some(&b'=') {
                    pos = skip_whitespace(html, pos + 1);
                    let (raw, after) = match bytes.get(pos) {
                        Some(&quote @ (b'"' | b'\'')) => {
                            let close = pos + 1 + html[pos + 1..].find(char::from(quote))?;
                            (&html[pos + 1..close], close + 1)
                        }
                        _ => {
                            let end = html[pos..].find(|c: char| c.is_ascii_whitespace() || c == '>');
                            let end = end.map_or(html.len(), |offset| pos + offset);
                            (&html[pos..end], end)
                        }
                    };
                    value = decode_text(raw);
                    pos = after;
                }
                element.attrs.push((key, value));
            }
        }
    }
}

/// Decodes entities and drops control characters other than newline and tab.
fn decode_text(raw: &str) -> String {
    let keep = |c: &char| !c.is_control() || matches!(c, '\n' | '\t');
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.extend(rest[..amp].chars().filter(keep));
        let (decoded, len) = decode_entity(&rest[amp..]).unwrap_or(('&', 1));
        out.extend(Some(decoded).filter(keep));
        rest = &rest[amp + len..];
    }
    out.extend(rest.chars().filter(keep));
    out
}

/// The named entities seen in practice; the rest of HTML's list stays literal text.
#[rustfmt::skip]
const ENTITIES: &[(&str, char)] = &[
    ("amp", '&'), ("lt", '<'), ("gt", '>'), ("quot", '"'), ("apos", '\''), ("nbsp", '\u{a0}'), ("copy", '©'), ("reg", '®'),
    ("trade", '™'), ("hellip", '…'), ("mdash", '—'), ("ndash", '–'), ("lsquo", '‘'), ("rsquo", '’'), ("ldquo", '“'),
    ("rdquo", '”'), ("laquo", '«'), ("raquo", '»'), ("bull", '•'), ("middot", '·'), ("deg", '°'), ("plusmn", '±'),
    ("times", '×'), ("divide", '÷'), ("euro", '€'), ("pound", '£'), ("yen", '¥'), ("cent", '¢'), ("sect", '§'),
    ("para", '¶'), ("larr", '←'), ("rarr", '→'), ("uarr", '↑'), ("darr", '↓'), ("le", '≤'), ("ge", '≥'), ("ne", '≠'),
    ("minus", '−'), ("shy", '\u{ad}'), ("zwj", '\u{200d}'), ("zwnj", '\u{200c}'),
];

/// Decodes the entity at the start of `s` (which starts with '&'), with its length.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let body = &s[1..];
    if let Some(number) = body.strip_prefix('#') {
        let (radix, skip) = if number.starts_with(['x', 'X']) { (16, 1) } else { (10, 0) };
        let digits = number[skip..].bytes().take_while(|b| char::from(*b).is_digit(radix)).count();
        if digits == 0 {
            return None;
        }
        let value = number[skip..skip + digits]
            .chars()
            .filter_map(|d| d.to_digit(radix))
            .fold(0u32, |value, d| value.saturating_mul(radix).saturating_add(d));
        let len = 2 + skip + digits + usize::from(number[skip + digits..].starts_with(';'));
        // NUL, surrogates and numbers past Unicode are not characters.
        return Some((char::from_u32(value).filter(|&c| c != '\0').unwrap_or('\u{FFFD}'), len));
    }
    let name_len = body.bytes().take_while(u8::is_ascii_alphanumeric).count();
    if body.as_bytes().get(name_len) != Some(&b';') {
        return None;
    }
    let (_, decoded) = ENTITIES.iter().find(|(name, _)| *name == &body[..name_len])?;
    Some((*decoded, name_len + 2))
}

/// Inline formatting as flags, so that equivalent markup compares equal however it was nested.
#[derive(Clone, Debug, Default, PartialEq)]
struct Style {
    link: Option<Rc<str>>,
    strong: bool,
    emphasis: bool,
    strike: bool,
    code: bool,
}

impl Style {
    /// What two neighbours share: whitespace takes only this, so delimiters hug the text they mark.
    fn shared(&self, other: &Style) -> Style {
        Style {
            link: self.link.clone().filter(|_| self.link == other.link),
            strong: self.strong && other.strong,
            emphasis: self.emphasis && other.emphasis,
            strike: self.strike && other.strike,
            code: self.code && other.code,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Atom {
    Char(char, Style),
    Break(Style),
    Image { src: Rc<str>, alt: String, style: Style },
}

impl Atom {
    fn style(&self) -> &Style {
        match self {
            Atom::Char(_, style) | Atom::Break(style) | Atom::Image { style, .. } => style,
        }
    }

    fn style_mut(&mut self) -> &mut Style {
        match self {
            Atom::Char(_, style) | Atom::Break(style) | Atom::Image { style, .. } => style,
        }
    }

    fn is_blank(&self) -> bool {
        matches!(self, Atom::Char(' ', _) | Atom::Break(_))
    }
}

enum Block {
    Paragraph(Vec<Atom>),
    Heading(u8, Vec<Atom>),
    Code { lang: String, text: String },
    Quote(Vec<Block>),
    List { ordered: bool, start: u64, items: Vec<Item> },
    Rule,
    Table(Vec<Vec<Vec<Atom>>>),
}

struct Item {
    checked: Option<bool>,
    blocks: Vec<Block>,
}

fn parse_blocks(html: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    collect_blocks(&parse_html(html).children, 0, &mut blocks);
    blocks
}

fn has_block_inside(element: &Element) -> bool {
    element.elements().any(|child| !is_hidden(&child.name) && (is_block(&child.name) || has_block_inside(child)))
}

fn collect_blocks(nodes: &[Node], nesting: usize, out: &mut Vec<Block>) {
    let mut inline = Vec::new();
    for node in nodes {
        match node {
            Node::Element(element) if is_hidden(&element.name) => {}
            Node::Element(element) if is_block(&element.name) || has_block_inside(element) => {
                push_paragraph(inline.drain(..), out);
                collect_block(element, nesting, out);
            }
            _ => inline.push(node),
        }
    }
    push_paragraph(inline, out);
}

fn push_paragraph<'a>(nodes: impl IntoIterator<Item = &'a Node>, out: &mut Vec<Block>) {
    let atoms = inline_atoms(nodes, false);
    if !atoms.is_empty() {
        out.push(Block::Paragraph(atoms));
    }
}

fn collect_block(element: &Element, nesting: usize, out: &mut Vec<Block>) {
    let within_limit = nesting < MAX_CONTAINERS;
    match element.name.as_str() {
        "p" if !has_block_inside(element) => push_paragraph(&element.children, out),
        name @ ("h1" | "h2" | "h3" | "h4" | "h5" | "h6") => {
            let atoms = inline_atoms(&element.children, true);
            if !atoms.is_empty() {
                out.push(Block::Heading(name.as_bytes()[1] - b'0', atoms));
            }
        }
        "pre" => out.push(code_block(element)),
        "blockquote" if within_limit => {
            let mut inner = Vec::new();
            collect_blocks(&element.children, nesting + 1, &mut inner);
            if !inner.is_empty() {
                out.push(Block::Quote(inner));
            }
        }
        "ul" | "ol" if within_limit => list_block(element, nesting + 1, out),
        "hr" => out.push(Block::Rule),
        "table" => table_block(element, out),
        _ => collect_blocks(&element.children, nesting, out),
    }
}

fn list_block(list: &Element, nesting: usize, out: &mut Vec<Block>) {
    let mut items = Vec::new();
    for node in &list.children {
        let mut blocks = Vec::new();
        let mut checked = None;
        match node {
            Node::Element(li) if li.name == "li" => {
                collect_blocks(&li.children, nesting, &mut blocks);
                checked =
                    li.attr("data-checked").map(|v| v == "true").or_else(|| leading_checkbox(&li.children).flatten());
            }
            other => collect_blocks(std::slice::from_ref(other), nesting, &mut blocks),
        }
        // Empty items show nothing, and a checkbox only reads back in front of a paragraph.
        if let Some(first) = blocks.first() {
            let checked = checked.filter(|_| matches!(first, Block::Paragraph(_)));
            items.push(Item { checked, blocks });
        }
    }
    if !items.is_empty() {
        let start = list.attr("start").and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(1);
        out.push(Block::List { ordered: list.name == "ol", start: start.min(MAX_LIST_NUMBER), items });
    }
}

/// The state of a checkbox that comes before any text in a list item: `None` while undecided.
fn leading_checkbox(nodes: &[Node]) -> Option<Option<bool>> {
    for node in nodes {
        let decided = match node {
            Node::Text(text) if text.trim().is_empty() => None,
            Node::Element(input) if input.name == "input" => {
                let checkbox = input.attr("type").is_some_and(|t| t.eq_ignore_ascii_case("checkbox"));
                Some(checkbox.then(|| input.attr("checked").is_some()))
            }
            Node::Element(element) if !matches!(element.name.as_str(), "ul" | "ol") => {
                leading_checkbox(&element.children)
            }
            _ => Some(None),
        };
        if decided.is_some() {
            return decided;
        }
    }
    None
}

fn code_block(pre: &Element) -> Block {
    let lang = std::iter::once(pre)
        .chain(pre.elements().filter(|element| element.name == "code"))
        .filter_map(|element| element.attr("class"))
        .flat_map(str::split_whitespace)
        .find_map(|class| class.strip_prefix("language-"))
        .unwrap_or_default()
        .chars()
        .filter(|&c| !c.is_whitespace() && !matches!(c, '`' | '\\' | '&'))
        .collect();
    let mut raw = String::new();
    raw_text(&pre.children, &mut raw);
    let lines: Vec<&str> = raw.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|line| !line.is_empty()).unwrap_or(lines.len());
    let last = lines.iter().rposition(|line| !line.is_empty()).map_or(first, |index| index + 1);
    Block::Code { lang, text: lines[first..last].join("\n") }
}

fn raw_text(nodes: &[Node], out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(&text.replace('\t', "    ")),
            Node::Element(element) if element.name == "br" => out.push('\n'),
            Node::Element(element) if is_hidden(&element.name) => {}
            Node::Element(element) => {
                raw_text(&element.children, out);
                if is_block(&element.name) && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
}

fn table_block(table: &Element, out: &mut Vec<Block>) {
    let rows: Vec<&Element> = table
        .elements()
        .flat_map(|child| match child.name.as_str() {
            "thead" | "tbody" | "tfoot" => child.elements().filter(|row| row.name == "tr").collect(),
            "tr" => vec![child],
            _ => Vec::new(),
        })
        .collect();
    let cells: Vec<Vec<&Element>> = rows
        .iter()
        .map(|row| row.elements().filter(|cell| matches!(cell.name.as_str(), "td" | "th")).collect())
        .collect();
    let width = cells.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return;
    }
    // A ragged table padded out could multiply a small payload many times over: past the cap each
    // row is written as a paragraph of its cells instead.
    if width.saturating_mul(cells.len()) > MAX_TABLE_CELLS {
        for row in &cells {
            let mut atoms = Vec::new();
            for (index, cell) in row.iter().enumerate() {
                if index > 0 {
                    atoms.extend(" · ".chars().map(|c| Atom::Char(c, Style::default())));
                }
                atoms.extend(inline_atoms(&cell.children, true));
            }
            if !atoms.is_empty() {
                out.push(Block::Paragraph(atoms));
            }
        }
        return;
    }
    // Markdown tables are rectangular: short rows are padded rather than letting a row lose cells.
    let rows = cells
        .iter()
        .map(|row| {
            (0..width).map(|i| row.get(i).map(|cell| inline_atoms(&cell.children, true)).unwrap_or_default()).collect()
        })
        .collect();
    out.push(Block::Table(rows));
}

fn inline_atoms<'a>(nodes: impl IntoIterator<Item = &'a Node>, single_line: bool) -> Vec<Atom> {
    let mut atoms = Vec::new();
    for node in nodes {
        collect_inline(node, &Style::default(), single_line, &mut atoms);
    }
    normalize(atoms)
}

fn collect_inline(node: &Node, style: &Style, single_line: bool, atoms: &mut Vec<Atom>) {
    let element = match node {
        Node::Text(text) => return atoms.extend(text.chars().map(|c| Atom::Char(c, style.clone()))),
        Node::Element(element) => element,
    };
    let mut inner = style.clone();
    match element.name.as_str() {
        "br" if single_line || style.code => atoms.push(Atom::Char(' ', style.clone())),
        "br" => atoms.push(Atom::Break(style.clone())),
        "img" => {
            let alt = element.attr("alt").unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
            match element.attr("src").filter(|src| is_safe_url(src)) {
                Some(src) if !style.code => {
                    atoms.push(Atom::Image { src: normalize_url(src).into(), alt, style: style.clone() });
                }
                _ => atoms.extend(alt.chars().map(|c| Atom::Char(c, style.clone()))),
            }
        }
        name if is_hidden(name) => {}
        name => {
            if !style.code {
                match name {
                    "strong" | "b" => inner.strong = true,
                    "em" | "i" => inner.emphasis = true,
                    "s" | "del" | "strike" => inner.strike = true,
                    "code" | "kbd" | "samp" | "tt" => inner.code = true,
                    "a" if style.link.is_none() => {
                        inner.link = element
                            .attr("href")
                            .filter(|href| is_safe_url(href))
                            .map(|href| normalize_url(href).into());
                    }
                    _ => {}
                }
            }
            // Blocks flattened into a line stay apart as words.
            let gap = is_block(name);
            if gap {
                atoms.push(Atom::Char(' ', style.clone()));
            }
            for child in &element.children {
                collect_inline(child, &inner, single_line, atoms);
            }
            if gap {
                atoms.push(Atom::Char(' ', style.clone()));
            }
        }
    }
}

/// Collapses whitespace as HTML does and gives whitespace only the styling its neighbours share.
fn normalize(raw: Vec<Atom>) -> Vec<Atom> {
    let mut atoms: Vec<Atom> = Vec::with_capacity(raw.len());
    for atom in raw {
        match atom {
            Atom::Char(c, style) if c.is_whitespace() => {
                if atoms.last().is_some_and(|last| !last.is_blank()) {
                    atoms.push(Atom::Char(' ', style));
                }
            }
            Atom::Break(_) => {
                if matches!(atoms.last(), Some(Atom::Char(' ', _))) {
                    atoms.pop();
                }
                if !atoms.is_empty() {
                    atoms.push(atom);
                }
            }
            other => atoms.push(other),
        }
    }
    while atoms.last().is_some_and(Atom::is_blank) {
        atoms.pop();
    }
    let mut solid_before = Vec::with_capacity(atoms.len());
    let mut last_solid = None;
    for (index, atom) in atoms.iter().enumerate() {
        solid_before.push(last_solid);
        if !atom.is_blank() {
            last_solid = Some(index);
        }
    }
    let mut solid_after = None;
    for index in (0..atoms.len()).rev() {
        if !atoms[index].is_blank() {
            solid_after = Some(index);
        } else if let (Some(before), Some(after)) = (solid_before[index], solid_after) {
            let shared = atoms[index].style().shared(atoms[before].style()).shared(atoms[after].style());
            *atoms[index].style_mut() = shared;
        }
    }
    atoms
}

/// Where a line of inline Markdown ends up; each reads back a little differently.
#[derive(Clone, Copy, PartialEq)]
enum Line {
    Paragraph,
    Heading,
    Cell,
}

#[derive(Clone, Copy)]
struct Delimiters {
    strong: &'static str,
    emphasis: &'static str,
}

/// Tried in order: some neighbouring delimiters only parse with the other character.
const DELIMITERS: [Delimiters; 3] = [
    Delimiters { strong: "**", emphasis: "*" },
    Delimiters { strong: "**", emphasis: "_" },
    Delimiters { strong: "__", emphasis: "*" },
];

fn render_inline(atoms: &[Atom], line: Line) -> String {
    if atoms.is_empty() {
        return String::new();
    }
    let emphasised = atoms.iter().any(|atom| atom.style().strong || atom.style().emphasis);
    let variants = if emphasised { &DELIMITERS[..] } else { &DELIMITERS[..1] };
    for delimiters in variants {
        let markdown = render_atoms(atoms, *delimiters, line);
        if reads_back(&markdown, atoms, line) {
            return markdown;
        }
    }
    // Give up formatting, then links and code, rather than write Markdown that reads back differently.
    let plain = simplify(atoms, true);
    for simpler in [simplify(atoms, false), plain.clone()] {
        if simpler != atoms {
            let markdown = render_atoms(&simpler, DELIMITERS[0], line);
            if reads_back(&markdown, &simpler, line) {
                return markdown;
            }
        }
    }
    let mut escaped = String::new();
    for atom in &plain {
        match atom {
            Atom::Char(c, _) if c.is_ascii_punctuation() => escaped.extend(['\\', *c]),
            Atom::Char(c, _) => escaped.push(*c),
            Atom::Break(_) => escaped.push_str("\\\n"),
            Atom::Image { .. } => {}
        }
    }
    escaped
}

/// Drops emphasis and strikethrough, and with `plain` also links, code and images (keeping alt text).
fn simplify(atoms: &[Atom], plain: bool) -> Vec<Atom> {
    let mut out = Vec::with_capacity(atoms.len());
    for atom in atoms {
        let mut style = Style::default();
        if !plain {
            style.link = atom.style().link.clone();
            style.code = atom.style().code;
        }
        match atom {
            Atom::Char(c, _) => out.push(Atom::Char(*c, style)),
            Atom::Break(_) => out.push(Atom::Break(style)),
            Atom::Image { alt, .. } if plain => out.extend(alt.chars().map(|c| Atom::Char(c, Style::default()))),
            Atom::Image { src, alt, .. } => out.push(Atom::Image { src: src.clone(), alt: alt.clone(), style }),
        }
    }
    normalize(out)
}

fn reads_back(markdown: &str, expected: &[Atom], line: Line) -> bool {
    let source = match line {
        Line::Paragraph => markdown.to_owned(),
        Line::Heading => format!("# {markdown}"),
        Line::Cell => format!("| {markdown} |\n| --- |"),
    };
    match (line, parse_blocks(&markdown_to_html(&source)).as_slice()) {
        (Line::Paragraph, [Block::Paragraph(atoms)]) | (Line::Heading, [Block::Heading(_, atoms)]) => atoms == expected,
        (Line::Cell, [Block::Table(rows)]) => matches!(rows.as_slice(), [row] if row.as_slice() == [expected]),
        _ => false,
    }
}

/// Opening and closing marks for a style, outermost first.
fn spans(style: &Style, delimiters: Delimiters) -> Vec<(String, String)> {
    let mut spans = Vec::new();
    if let Some(url) = &style.link {
        spans.push(("[".to_owned(), format!("]({})", destination(url))));
    }
    for (on, mark) in [(style.strong, delimiters.strong), (style.emphasis, delimiters.emphasis), (style.strike, "~~")] {
        if on {
            spans.push((mark.to_owned(), mark.to_owned()));
        }
    }
    spans
}

fn render_atoms(atoms: &[Atom], delimiters: Delimiters, line: Line) -> String {
    let in_cell = line == Line::Cell;
    let mut out = String::new();
    let mut open: Vec<(String, String)> = Vec::new();
    let mut rest = atoms;
    while let Some(first) = rest.first() {
        let wanted = spans(first.style(), delimiters);
        let kept = open.iter().zip(&wanted).take_while(|(a, b)| a == b).count();
        for (_, close) in open.drain(kept..).rev() {
            out.push_str(&close);
        }
        for (mark, _) in &wanted[kept..] {
            if mark == "[" && out.ends_with('!') {
                out.insert(out.len() - 1, '\\'); // "![" would start an image
            }
            out.push_str(mark);
        }
        open = wanted;
        let taken = match first {
            Atom::Char(_, style) => {
                let len = rest.iter().take_while(|atom| matches!(atom, Atom::Char(_, s) if s == style)).count();
                let text: String = rest[..len]
                    .iter()
                    .filter_map(|atom| if let Atom::Char(c, _) = atom { Some(*c) } else { None })
                    .collect();
                out.push_str(&if style.code { code_span(&text, in_cell) } else { escape_text(&text, in_cell) });
                len
            }
            Atom::Break(_) => {
                out.push_str("\\\n");
                1
            }
            Atom::Image { src, alt, .. } => {
                out.push_str(&format!("![{}]({})", escape_text(alt, in_cell), destination(src)));
                1
            }
        };
        rest = &rest[taken..];
    }
    for (_, close) in open.iter().rev() {
        out.push_str(close);
    }
    let mut markdown = out.split('\n').map(escape_line_start).collect::<Vec<_>>().join("\n");
    // A closing run of '#' would be taken as part of the heading syntax.
    let hashes = markdown.len() - markdown.trim_end_matches('#').len();
    if line == Line::Heading
        && hashes > 0
        && (markdown.len() == hashes || markdown[..markdown.len() - hashes].ends_with(' '))
    {
        markdown.insert(markdown.len() - hashes, '\\');
    }
    markdown
}

fn destination(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for (index, c) in url.char_indices() {
        if matches!(c, '(' | ')') || (c == '&' && looks_like_entity(&url[index + 1..])) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn looks_like_entity(after_ampersand: &str) -> bool {
    let len = after_ampersand.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'#').count();
    len > 0 && after_ampersand[len..].starts_with(';')
}

/// Escapes what would otherwise be read as Markdown, and only that.
fn escape_text(text: &str, in_cell: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous = None;
    for (index, c) in text.char_indices() {
        let rest = &text[index + c.len_utf8()..];
        let next = rest.chars().next();
        let escape = match c {
            '*' | '`' | '[' | ']' | '~' => true,
            '|' => in_cell,
            '\\' => next.is_none_or(|n| n.is_ascii_punctuation()),
            '_' => !(previous.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric)),
            '<' => next.is_none_or(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')),
            '&' => looks_like_entity(rest),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

fn code_span(text: &str, in_cell: bool) -> String {
    let fence = "`".repeat(longest_run(text, '`') + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    let body = if in_cell { text.replace('|', "\\|") } else { text.to_owned() };
    format!("{fence}{pad}{body}{pad}{fence}")
}

fn longest_run(text: &str, wanted: char) -> usize {
    text.split(|c| c != wanted).map(str::len).max().unwrap_or(0)
}

/// Escapes text at the start of a line that would begin a block.
fn escape_line_start(line: &str) -> String {
    let mut line = line.to_owned();
    // A delimiter row under a paragraph's first line would turn it into a table.
    if line.contains('|') && line.contains('-') && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
        line = line.replace('|', "\\|");
    }
    let mut chars = line.chars();
    let first = chars.next();
    let second = chars.next();
    let marker = match first {
        Some('#' | '>') => true,
        Some(c @ ('-' | '+' | '=')) => matches!(second, None | Some(' ')) || line.chars().all(|x| x == c || x == ' '),
        _ => false,
    };
    if marker {
        line.insert(0, '\\');
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    let list_number = (1..=9).contains(&digits)
        && matches!(line.as_bytes().get(digits), Some(b'.' | b')'))
        && matches!(line.as_bytes().get(digits + 1), None | Some(b' '));
    if list_number {
        line.insert(digits, '\\');
    }
    line
}

fn render_blocks(blocks: &[Block], separator: &str) -> String {
    let mut parts = Vec::with_capacity(blocks.len());
    let mut previous_list: Option<(bool, bool)> = None; // (ordered, alternate marker)
    for block in blocks {
        let mut alternate = false;
        previous_list = match block {
            Block::List { ordered, .. } => {
                // Two lists in a row would merge into one unless their markers differ.
                alternate =
                    previous_list.is_some_and(|(was_ordered, was_alternate)| was_ordered == *ordered && !was_alternate);
                Some((*ordered, alternate))
            }
            _ => None,
        };
        parts.push(render_block(block, alternate));
    }
    parts.join(separator)
}

fn render_block(block: &Block, alternate: bool) -> String {
    match block {
        Block::Paragraph(atoms) => render_inline(atoms, Line::Paragraph),
        Block::Heading(level, atoms) => {
            format!("{} {}", "#".repeat(usize::from(*level)), render_inline(atoms, Line::Heading))
        }
        Block::Code { lang, text } => {
            let fence = "`".repeat(longest_run(text, '`').max(2) + 1);
            let body = if text.is_empty() { String::new() } else { format!("{text}\n") };
            format!("{fence}{lang}\n{body}{fence}")
        }
        Block::Quote(blocks) => prefix_lines(&render_blocks(blocks, "\n\n"), "> ", "> "),
        Block::List { ordered, start, items } => render_list(*ordered, *start, items, alternate),
        Block::Rule => "---".to_owned(),
        Block::Table(rows) => {
            let row_line = |cells: &Vec<Vec<Atom>>| {
                let cells: Vec<String> = cells.iter().map(|cell| render_inline(cell, Line::Cell)).collect();
                format!("| {} |", cells.join(" | "))
            };
            let mut lines: Vec<String> = rows.iter().map(row_line).collect();
            lines.insert(1.min(lines.len()), format!("|{}", " --- |".repeat(rows[0].len())));
            lines.join("\n")
        }
    }
}

fn render_list(ordered: bool, start: u64, items: &[Item], alternate: bool) -> String {
    // Tight lists keep their lines together; anything beyond a paragraph and sublists needs blank lines.
    let tight = items.iter().all(Item::fits_tight_list);
    let separator = if tight { "\n" } else { "\n\n" };
    let rendered: Vec<String> = items
        .iter()
        .zip(0u64..)
        .map(|(item, index)| {
            let marker = match (ordered, alternate) {
                (false, false) => "-".to_owned(),
                (false, true) => "+".to_owned(),
                (true, _) => {
                    format!("{}{}", start.saturating_add(index).min(MAX_LIST_NUMBER), if alternate { ')' } else { '.' })
                }
            };
            let mut body = render_blocks(&item.blocks, separator);
            if matches!(item.blocks.first(), Some(Block::Rule)) {
                body.replace_range(..3, "***"); // "- ---" reads as a rule, not an item
            }
            if let Some(checked) = item.checked {
                body.insert_str(0, if checked { "[x] " } else { "[ ] " });
            }
            prefix_lines(&body, &format!("{marker} "), &" ".repeat(marker.len() + 1))
        })
        .collect();
    rendered.join(separator)
}

impl Item {
    fn fits_tight_list(&self) -> bool {
        let sublists = match self.blocks.as_slice() {
            [Block::Paragraph(_), rest @ ..] => {
                // Only an ordered list starting at 1 may interrupt the paragraph above it.
                if matches!(rest.first(), Some(Block::List { ordered: true, start, .. }) if *start != 1) {
                    return false;
                }
                rest
            }
            blocks => blocks,
        };
        sublists.iter().all(|block| matches!(block, Block::List { .. }))
    }
}

/// Prefixes the first line and the rest differently; blank lines get the prefix without its trailing spaces.
fn prefix_lines(text: &str, first: &str, rest: &str) -> String {
    let lines: Vec<String> = text
        .split('\n')
        .enumerate()
        .map(|(index, line)| {
            let prefix = if index == 0 { first } else { rest };
            if line.is_empty() { prefix.trim_end().to_owned() } else { format!("{prefix}{line}") }
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn assert_converts(convert: fn(&str) -> String, cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            assert_eq!(convert(input), *expected, "from {input:?}");
        }
    }

    /// The non-whitespace text a reader sees, in order, image alt text included.
    fn visible(html: &str) -> String {
        fn walk(nodes: &[Node], out: &mut String) {
            for node in nodes {
                match node {
                    Node::Text(text) => out.extend(text.chars().filter(|c| !c.is_whitespace())),
                    Node::Element(element) if is_hidden(&element.name) => {}
                    Node::Element(element) => {
                        out.extend(element.attr("alt").unwrap_or_default().chars().filter(|c| !c.is_whitespace()));
                        walk(&element.children, out);
                    }
                }
            }
        }
        let mut out = String::new();
        walk(&parse_html(html).children, &mut out);
        out
    }

    fn assert_terminal_safe(markdown: &str) {
        assert!(!markdown.chars().any(|c| c.is_control() && c != '\n'), "control character in {markdown:?}");
        assert!(markdown.lines().all(|line| line == line.trim_end()), "trailing whitespace in {markdown:?}");
        // Code blocks are verbatim; everywhere else blocks are one blank line apart.
        assert!(markdown.contains("```") || !markdown.contains("\n\n\n"), "double blank line in {markdown:?}");
    }

    #[test]
    fn markdown_renders_to_sanitized_html() {
        assert_converts(
            markdown_to_html,
            &[
                ("", ""),
                ("  \n\t\n", ""),
                (
                    "Hi *em* **strong** ~~gone~~ `a<b`",
                    "<p>Hi <em>em</em> <strong>strong</strong> <del>gone</del> <code>a&lt;b</code></p>",
                ),
                ("# Title", "<h1>Title</h1>"),
                ("```rust\nlet x = 1;\n```", "<pre><code class=\"language-rust\">let x = 1;\n</code></pre>"),
                ("- a\n  - b", "<ul>\n<li>a\n<ul>\n<li>b</li>\n</ul>\n</li>\n</ul>"),
                ("- [x] done", "<ul>\n<li><input disabled=\"\" type=\"checkbox\" checked=\"\"/>\ndone</li>\n</ul>"),
                ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
                (
                    "| a |\n| - |\n| 1 |",
                    "<table><thead><tr><th>a</th></tr></thead><tbody>\n<tr><td>1</td></tr>\n</tbody></table>",
                ),
                (
                    "[x](https://e.com/?a=1&b=2) [r](/rel) [m](mailto:a@b.c)",
                    "<p><a href=\"https://e.com/?a=1&amp;b=2\">x</a> <a href=\"/rel\">r</a> <a href=\"mailto:a@b.c\">m</a></p>",
                ),
                (
                    "[x](javascript:alert(1)) [y](JaVaScRiPt:x) [z](data:text/html,x) ![pic](vbscript:x)",
                    "<p>x y z pic</p>",
                ),
                ("a <b onclick=\"x\">b</b>", "<p>a &lt;b onclick=\"x\"&gt;b&lt;/b&gt;</p>"),
                ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
                ("<div>\n*raw*\n</div>", "<p>&lt;div&gt;<br />\n*raw*<br />\n&lt;/div&gt;</p>"),
                ("clear\u{1b}[2J\u{7}\u{9b}", "<p>clear[2J</p>"),
            ],
        );
    }

    #[test]
    fn html_constructs_become_markdown() {
        let plane_tasks = "<ul data-type=\"taskList\"><li data-checked=\"true\"><label><input type=\"checkbox\" checked=\"checked\"><span></span></label><div><p>done</p></div></li><li data-checked=\"false\"><label><input type=\"checkbox\"><span></span></label><div><p>todo</p></div></li></ul>";
        assert_converts(
            html_to_markdown,
            &[
                ("<p>Hi <strong>a</strong>, <b>b</b>, <em>c</em>, <i>d</i></p>", "Hi **a**, **b**, *c*, *d*"),
                ("<p><s>a</s> <del>b</del> <strike>c</strike></p>", "~~a~~ ~~b~~ ~~c~~"),
                ("<p><code>x</code> <code>a`b</code> <code>`</code></p>", "`x` ``a`b`` `` ` ``"),
                (
                    "<p>a<strong> b </strong>c <em>d</em><em>e</em> <strong><em>f</em></strong></p>",
                    "a **b** c *de* ***f***",
                ),
                ("<p>a<br>b<br/></p><p>  c \n\t d  </p>", "a\\\nb\n\nc d"),
                (
                    "<p><a href=\"https://e.com/a b(c)\">link</a> <a href='/x?a=1&amp;b=2' title=t>q</a> <a href=/u>u</a></p>",
                    "[link](https://e.com/a%20b\\(c\\)) [q](/x?a=1&b=2) [u](/u)",
                ),
                (
                    "<p><a href=\"javascript:alert(1)\">click</a> <a href=\" java\tscript:x\">me</a> <a>bare</a></p>",
                    "click me bare",
                ),
                ("<p>x!<a href=\"/y\">y</a></p>", "x\\![y](/y)"),
                (
                    "<img src=\"https://x/y.png\" alt=\"a pic\"> <img src=\"javascript:x\" alt=\"alt\">",
                    "![a pic](https://x/y.png) alt",
                ),
                ("<custom-tag>hi <blink>there</blink></custom-tag> <span>you</span>", "hi there you"),
                ("<h1>One</h1><h3>Three</h3><h6>Six</h6><h2></h2><p>x</p>", "# One\n\n### Three\n\n###### Six\n\nx"),
                ("<h1>C# #</h1><h2>#</h2>", "# C# \\#\n\n## \\#"),
                ("<p>a</p><hr><p>b</p>", "a\n\n---\n\nb"),
                (
                    "<pre><code class=\"language-rust\">fn main() {\n\tx\n}\n</code></pre>",
                    "```rust\nfn main() {\n    x\n}\n```",
                ),
                ("<pre>a ```` b\n\n\n*c*</pre>", "`````\na ```` b\n\n\n*c*\n`````"),
                ("<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "- a\n  - b\n- c"),
                ("<ol start=\"9\"><li>x</li><li>y<ol><li>z</li></ol></li></ol>", "9. x\n10. y\n    1. z"),
                ("<ul><li><p>a</p></li><li><p>b</p><p>c</p></li></ul>", "- a\n\n- b\n\n  c"),
                (
                    "<ul><li>a</li></ul><ul><li>b</li></ul><ol><li>c</li></ol><ol><li>d</li></ol>",
                    "- a\n\n+ b\n\n1. c\n\n1) d",
                ),
                ("<ul><li><hr></li><li></li></ul>", "- ***"),
                (plane_tasks, "- [x] done\n- [ ] todo"),
                ("<blockquote><p>a</p><blockquote><p>b</p></blockquote></blockquote>", "> a\n>\n> > b"),
                ("<div><p>a</p><div>b</div></div>text", "a\n\nb\n\ntext"),
                (
                    "<table><tr><th><p>a</p></th><th>b</th></tr><tr><td>1</td><td>x|y <code>p|q</code></td><td>c</td></tr></table>",
                    "| a | b |  |\n| --- | --- | --- |\n| 1 | x\\|y `p\\|q` | c |",
                ),
            ],
        );
    }

    #[test]
    fn html_text_is_escaped_only_where_markdown_would_read_it() {
        assert_converts(
            html_to_markdown,
            &[
                (
                    "<p>*a* _b_ snake_case [c] `d` a\\b \\* &lt;div&gt; a < b ~e~ a|b 5*3</p>",
                    "\\*a\\* \\_b\\_ snake_case \\[c\\] \\`d\\` a\\b \\\\\\* \\<div> a < b \\~e\\~ a|b 5\\*3",
                ),
                (
                    "<p># h</p><p>1. x</p><p>2) y</p><p>- z</p><p>+ w</p><p>&gt; q</p><p>---</p><p>a<br>===</p>",
                    "\\# h\n\n1\\. x\n\n2\\) y\n\n\\- z\n\n\\+ w\n\n\\> q\n\n\\---\n\na\\\n\\===",
                ),
                ("<p>a|b<br>-|-</p><p>&amp;amp; &amp;#35; AT&amp;T</p>", "a|b\\\n-\\|-\n\n\\&amp; \\&#35; AT&T"),
            ],
        );
    }

    #[test]
    fn malformed_markup_entities_and_comments_are_tolerated() {
        assert_converts(
            html_to_markdown,
            &[
                (
                    "<p>&amp; &lt; &gt; &quot; &#169; &#x1F600; &copy; &bogus; & a &#xD800; &#99999999; &#0; &#x</p>",
                    "& < > \" © 😀 © \\&bogus; & a \u{FFFD} \u{FFFD} \u{FFFD} &#x",
                ),
                ("<p>a<!-- hidden <b>x</b> -->b<!-- unterminated", "ab"),
                ("<!DOCTYPE html><?xml x?><p>a</p></p></br>b", "a\n\nb"),
                ("<p>a<script>alert('<p>')</script><STYLE>p{}</STYLE>b<title>t</title></p><script>never closed", "ab"),
                ("<p><b>bold<i>both", "**bold*both***"),
                ("<P CLASS=x>one<p>two<ul><li>a<li>b</ul>", "one\n\ntwo\n\n- a\n- b"),
                ("a < b <3 <", "a < b <3 \\<"),
                ("<p title='unterminated>text</p>", "\\<p title='unterminated>text\\</p>"),
            ],
        );
    }

    #[test]
    fn hostile_input_is_neutralised() {
        for html in ["<p>\u{1b}[2Jclear&#27;[31m\u{9b}x\u{7}\r\n\u{0}</p>", "\u{1b}]0;title\u{7}", "&#x1b;&#155;&#127;"]
        {
            let markdown = html_to_markdown(html);
            assert_terminal_safe(&markdown);
            assert!(!markdown.contains(['\u{1b}', '\u{9b}']), "{markdown:?}");
        }
        assert_eq!(html_to_markdown("<script>alert(1)</script><a href=\"javascript:alert(1)\">x</a>"), "x");
    }

    #[test]
    fn deep_nesting_is_capped() {
        let divs = format!("{}deep{}", "<div>".repeat(10_000), "</div>".repeat(10_000));
        assert_eq!(html_to_markdown(&divs), "deep");
        for html in
            [format!("{}x", "<b><i><ul><li><blockquote>".repeat(10_000)), markdown_to_html(&"> ".repeat(10_000))]
        {
            let markdown = html_to_markdown(&html);
            assert_eq!(html_to_markdown(&markdown_to_html(&markdown)), markdown);
        }
    }

    #[test]
    fn ragged_tables_cannot_amplify_the_payload() {
        let html =
            format!("<table><tr>{}</tr>{}</table>", "<td>x</td>".repeat(2_000), "<tr><td>y</td></tr>".repeat(2_000));
        let markdown = html_to_markdown(&html);
        assert!(markdown.len() < html.len(), "{} bytes of markdown from {} of html", markdown.len(), html.len());
        assert!(markdown.starts_with("x · x · x"));
        assert_eq!(html_to_markdown(&markdown_to_html(&markdown)), markdown);
        // A small ragged table is still a table, padded.
        let small = html_to_markdown("<table><tr><th>a</th><th>b</th></tr><tr><td>1</td></tr></table>");
        assert!(small.contains("| a | b |") && small.lines().count() == 3, "{small}");
    }

    fn text() -> impl Strategy<Value = String> {
        "[-a-zA-Z0-9é日😀 *_#\\[\\]\\\\`<>\\&!\\~|.:()=+;]{1,10}"
    }

    fn url() -> impl Strategy<Value = String> {
        let fixed = ["https://example.com/a_b?c=1&d=(2)", "javascript:alert(1)", "mailto:x@y.z"].map(str::to_owned);
        prop_oneof![prop::sample::select(fixed.to_vec()), "[a-z/.:#?&;()é]{0,12}"]
    }

    fn inline() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![6 => text(), 1 => text().prop_map(|t| format!("`{t}`")), 1 => Just("\\\n".into()), 1 => Just("\n".into())];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(|parts| parts.concat()),
                (inner.clone(), prop::sample::select(vec!["*", "**", "_", "__", "~~"]))
                    .prop_map(|(t, mark)| format!("{mark}{t}{mark}")),
                (inner, url()).prop_map(|(t, u)| format!("[{t}]({u})")),
                (text(), url()).prop_map(|(t, u)| format!("![{t}]({u})")),
            ]
        })
    }

    fn list(items: &[String], marker: impl Fn(usize) -> String, tight: bool) -> String {
        let items: Vec<String> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let marker = marker(i);
                prefix_lines(item, &marker, &" ".repeat(marker.len()))
            })
            .collect();
        items.join(if tight { "\n" } else { "\n\n" })
    }

    fn document() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            4 => inline(),
            1 => (1..=6usize, inline()).prop_map(|(level, t)| format!("{} {t}", "#".repeat(level))),
            1 => ("[a-z]{0,4}", prop::collection::vec(text(), 0..4)).prop_map(|(lang, lines)| format!("```{lang}\n{}\n```", lines.join("\n"))),
            1 => Just("---".into()),
            1 => prop::collection::vec(text(), 1..4).prop_map(|cells| format!("| {} |\n|{}\n| {} |", cells.join(" | "), " --- |".repeat(cells.len()), cells.join(" | "))),
            1 => Just("<div>\n*raw* html\n</div>".into()),
        ];
        let block = leaf.prop_recursive(3, 16, 4, |inner| {
            let items = || prop::collection::vec(inner.clone(), 1..4);
            prop_oneof![
                (items(), any::<bool>()).prop_map(|(items, tight)| list(&items, |_| "- ".into(), tight)),
                (items(), 0..12usize, any::<bool>()).prop_map(|(items, start, tight)| list(
                    &items,
                    |i| format!("{}. ", start + i),
                    tight
                )),
                (items(), any::<bool>()).prop_map(|(items, done)| list(
                    &items,
                    |i| if done ^ (i % 2 == 0) { "- [x] " } else { "- [ ] " }.into(),
                    true
                )),
                inner.clone().prop_map(|t| prefix_lines(&t, "> ", "> ")),
                items().prop_map(|blocks| blocks.join("\n\n")),
            ]
        });
        (prop::collection::vec(block, 0..5), any::<bool>())
            .prop_map(|(blocks, tight)| blocks.join(if tight { "\n" } else { "\n\n" }))
    }

    fn html_soup() -> impl Strategy<Value = String> {
        let tags = vec![
            "<p>",
            "</p>",
            "<b>",
            "</b>",
            "<em>",
            "</em>",
            "<s>",
            "</s>",
            "<code>",
            "</code>",
            "<ul>",
            "</ul>",
            "<ol start=\"3\">",
            "</ol>",
            "<li>",
            "</li>",
            "<blockquote>",
            "</blockquote>",
            "<pre><code class=\"language-x\">",
            "</code></pre>",
            "<h2>",
            "</h2>",
            "<a href=\"https://e.com/x\">",
            "<a href=\"javascript:x\">",
            "</a>",
            "<br>",
            "<hr>",
            "<img src=\"/i.png\" alt=\"i\">",
            "<table>",
            "<tr>",
            "<td>",
            "<th>",
            "</table>",
            "<li data-checked=\"true\">",
            "<input type=\"checkbox\" checked>",
            "&amp;",
            "&#x41;",
            "&bogus",
            "&nbsp;",
            "<!-- c -->",
            "<script>x</script>",
            "\n",
            " ",
            "<div>",
            "</div>",
            "<pre>",
            "</pre>",
        ];
        let token = prop_oneof![text(), prop::sample::select(tags).prop_map(str::to_owned)];
        prop::collection::vec(token, 0..32).prop_map(|tokens| tokens.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn markdown_is_stable_after_one_round_trip(markdown in document()) {
            let h1 = markdown_to_html(&markdown);
            let m1 = html_to_markdown(&h1);
            let h2 = markdown_to_html(&m1);
            prop_assert_eq!(html_to_markdown(&h2), m1.clone(), "h1 {:?}\nh2 {:?}", h1, h2);
            prop_assert_eq!(visible(&h1), visible(&h2), "m1 {:?}", m1);
            assert_terminal_safe(&m1);
        }

        #[test]
        fn html_is_stable_after_one_round_trip(html in prop_oneof![html_soup(), any::<String>()]) {
            let m1 = html_to_markdown(&html);
            prop_assert_eq!(html_to_markdown(&markdown_to_html(&m1)), m1);
        }

        #[test]
        fn any_string_converts_without_panics_or_control_characters(input in any::<String>()) {
            assert_terminal_safe(&html_to_markdown(&input));
            prop_assert!(!markdown_to_html(&input).chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')));
        }
    }
}
