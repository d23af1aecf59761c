//! Screen geometry, shared by `update` (scrolling needs to know how many rows
//! fit) and `draw`.

use ratatui::layout::Rect;

/// Smallest terminal the console draws in; below it shows a notice.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 10;
/// Lines per board card: key line and title line.
pub const CARD_HEIGHT: u16 = 2;
/// Board columns are never narrower than this; more lanes scroll sideways.
pub const MIN_COLUMN: u16 = 26;
pub const MAX_COLUMN: u16 = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub tabs: Rect,
    pub body: Rect,
    pub drawer: Option<Rect>,
    pub input: Option<Rect>,
    pub status: Rect,
}

pub fn too_small(width: u16, height: u16) -> bool {
    width < MIN_WIDTH || height < MIN_HEIGHT
}

pub fn areas(width: u16, height: u16, drawer_open: bool, input_open: bool) -> Areas {
    let full = Rect::new(0, 0, width, height);
    let tabs = Rect { height: 1.min(full.height), ..full };
    let status = Rect { y: full.height.saturating_sub(1), height: 1.min(full.height), ..full };
    let input = input_open.then(|| Rect { y: full.height.saturating_sub(2), height: 1, ..full });
    let bottom = if input_open { 2 } else { 1 };
    let middle_height = full.height.saturating_sub(1 + bottom);
    let drawer_height = if drawer_open { (middle_height / 3).clamp(5.min(middle_height), 14) } else { 0 };
    let body = Rect { y: 1, height: middle_height.saturating_sub(drawer_height), ..full };
    let drawer = drawer_open.then(|| Rect { y: body.y + body.height, height: drawer_height, ..full });
    Areas { tabs, body, drawer, input, status }
}

/// How the board splits its area: (visible columns, column width, cards per column).
pub fn board_geometry(body: Rect, lanes: usize) -> (usize, u16, i64) {
    let lanes = lanes.max(1);
    let fit = (body.width / MIN_COLUMN).max(1) as usize;
    let visible = fit.min(lanes);
    let width = (body.width / visible as u16).min(MAX_COLUMN);
    // One line of lane header, one of border.
    let cards = (body.height.saturating_sub(2) / CARD_HEIGHT).max(1) as i64;
    (visible, width, cards)
}

/// Rows a list screen shows at once (minus the filter/header line).
pub fn list_capacity(body: Rect) -> usize {
    body.height.saturating_sub(1).max(1) as usize
}

/// Terminal size → the areas for the state's current mode.
pub fn for_state(state: &super::state::AppState) -> Areas {
    areas(state.width, state.height, state.drawer.open, state.input.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_fit_the_terminal() {
        for (w, h) in [(80, 24), (160, 48), (40, 10), (200, 60)] {
            for drawer in [false, true] {
                for input in [false, true] {
                    let a = areas(w, h, drawer, input);
                    let mut used = a.tabs.height + a.body.height + a.status.height;
                    used += a.drawer.map_or(0, |d| d.height) + a.input.map_or(0, |i| i.height);
                    assert_eq!(used, h, "{w}x{h} drawer={drawer} input={input}");
                }
            }
        }
    }

    #[test]
    fn board_columns_scroll_when_they_do_not_fit() {
        let (visible, width, cards) = board_geometry(Rect::new(0, 1, 80, 22), 6);
        assert_eq!(visible, 3);
        assert_eq!(width, 26);
        assert_eq!(cards, 10);
        let (visible, _, _) = board_geometry(Rect::new(0, 1, 200, 58), 6);
        assert_eq!(visible, 6);
    }
}
