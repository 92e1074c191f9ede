//! Disclosure control of one table (strata × the two groups, with each group's total
//! over the strata): primary suppression of every cell of fewer persons than the
//! threshold, then complementary suppression, so that no suppressed cell can be worked
//! out from what is published.
//!
//! A group's total is published with its count and mean, so its persons and their sum
//! are known; subtracting the published cells of that group leaves the suppressed ones
//! together. One suppressed cell in a group would be recovered exactly (its count, and
//! its mean from the sums). So wherever a group's total is published, its suppressed
//! cells number zero or at least two: the first published cell of the group, in stratum
//! order, joins a lone suppressed one. The partner is chosen by its place, never by its
//! size: were it the smallest published cell, its count would be bounded by the cells
//! still published, and the pair's known sum would pin the small cell (with threshold 10
//! and counts 9, 10, 10 the pair sums to 19 and the partner is at most 10, so the small
//! cell is 9). A group of one stratum whose cell is suppressed has its total suppressed
//! too. Nothing across the groups is published (no stratum total), so there is no other
//! margin to protect; a difference between the groups is published only where both of
//! its cells are.

/// Which cells and totals a table withholds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hidden {
    /// Per stratum, per group (participants, others): suppressed.
    pub cells: Vec<[bool; 2]>,
    /// Per group: its total over the strata is suppressed.
    pub totals: [bool; 2],
}

/// The suppression of a table of `counts` (persons per stratum and group) with the
/// groups' `totals`, for `threshold`.
pub fn suppress(counts: &[[usize; 2]], totals: [usize; 2], threshold: usize) -> Hidden {
    let mut cells: Vec<[bool; 2]> = counts
        .iter()
        .map(|row| row.map(|n| n < threshold))
        .collect();
    let mut hidden_totals = totals.map(|n| n < threshold);
    for g in 0..2 {
        if hidden_totals.get(g).copied().unwrap_or(true) {
            continue;
        }
        let suppressed = cells
            .iter()
            .filter(|row| row.get(g).copied().unwrap_or(false))
            .count();
        if suppressed != 1 {
            continue;
        }
        // The first published cell of this group, by its place (see the module docs).
        let partner = (0..counts.len()).find(|i| {
            cells
                .get(*i)
                .is_some_and(|row| !row.get(g).copied().unwrap_or(true))
        });
        match partner
            .and_then(|i| cells.get_mut(i))
            .and_then(|row| row.get_mut(g))
        {
            Some(cell) => *cell = true,
            // The group's only stratum: its total would be the cell itself.
            None => {
                if let Some(t) = hidden_totals.get_mut(g) {
                    *t = true;
                }
            }
        }
    }
    Hidden {
        cells,
        totals: hidden_totals,
    }
}

impl Hidden {
    /// Withholds also what `other` withholds (the same table's pattern for another
    /// measure), so that one measure's published cells say nothing of another's
    /// suppressed ones. Groups with zero or at least two suppressed cells in both keep
    /// that property in the union.
    pub fn union(&mut self, other: &Hidden) {
        for (mine, theirs) in self.cells.iter_mut().zip(&other.cells) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m |= *t;
            }
        }
        for (m, t) in self.totals.iter_mut().zip(other.totals) {
            *m |= t;
        }
    }
}

/// What someone holding only the published counts can work out: for every group whose
/// total is published, a lone unknown cell is its total minus the rest. Returns the
/// `(stratum, group)` of every suppressed cell so recovered (none, for a table
/// [`suppress`] made).
pub fn recoverable(counts: &[[usize; 2]], hidden: &Hidden) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for g in 0..2 {
        if hidden.totals.get(g).copied().unwrap_or(true) {
            continue;
        }
        let unknown: Vec<usize> = (0..counts.len())
            .filter(|i| {
                hidden
                    .cells
                    .get(*i)
                    .is_some_and(|row| row.get(g).copied().unwrap_or(false))
            })
            .collect();
        if let [only] = unknown.as_slice() {
            out.push((*only, g));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_small_cell_takes_the_first_published_one_with_it() {
        let counts = [[4, 40], [25, 60], [12, 55], [30, 8]];
        let totals = [71, 163];
        let h = suppress(&counts, totals, 10);
        // Participants: 4 is primary, 25 (the first published) joins it; others: 8 is
        // primary, 40 joins it.
        assert_eq!(
            h.cells,
            vec![[true, true], [true, false], [false, false], [false, true]]
        );
        assert_eq!(h.totals, [false, false]);
        assert!(recoverable(&counts, &h).is_empty());
    }

    #[test]
    fn no_table_leaves_a_suppressed_cell_recoverable() {
        // Every table of 1 to 4 strata with counts from a small set, both groups.
        let values = [0usize, 3, 9, 10, 11, 40];
        let mut tables = vec![Vec::<[usize; 2]>::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for t in &tables {
                for a in values {
                    for b in [0usize, 9, 12] {
                        let mut u = t.clone();
                        u.push([a, b]);
                        next.push(u);
                    }
                }
            }
            tables.extend(next);
        }
        let mut checked = 0;
        for t in tables.iter().filter(|t| !t.is_empty()) {
            let totals = [0, 1].map(|g| t.iter().map(|r| r[g]).sum());
            let h = suppress(t, totals, 10);
            assert!(recoverable(t, &h).is_empty(), "{t:?} → {h:?}");
            // Every cell below the threshold is withheld.
            for (row, hidden) in t.iter().zip(&h.cells) {
                for g in 0..2 {
                    assert!(row[g] >= 10 || hidden[g], "{t:?}");
                }
            }
            checked += 1;
        }
        assert!(checked > 5000, "{checked}");
    }
}
