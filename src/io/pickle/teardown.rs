//! Dropping the pickle machine's values without recursion: a hostile pickle can nest a million
//! tuples, whose ordinary (recursive) drop would overflow the stack.

use std::cell::RefCell;
use std::rc::Rc;

use super::vm::Value;

/// A tuple's items. Tuples are the one container the machine does not register (they cannot
/// form cycles), so they are freed by their last holder: wherever that drop happens (a value
/// popped and discarded while parsing, the parse's root), [`Drop`] takes the items apart
/// without recursion.
#[derive(Debug, Clone)]
pub struct Items(Rc<[Value]>);

impl From<Vec<Value>> for Items {
    fn from(items: Vec<Value>) -> Items {
        Items(Rc::from(items))
    }
}

impl std::ops::Deref for Items {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        &self.0
    }
}

thread_local! {
    /// Values waiting to be dropped by the teardown loop running on this thread, if one is.
    static PENDING: RefCell<Option<Vec<Value>>> = const { RefCell::new(None) };
}

impl Drop for Items {
    fn drop(&mut self) {
        // Held elsewhere too: only the count goes down.
        let Some(items) = Rc::get_mut(&mut self.0) else { return };
        let children: Vec<Value> = items.iter_mut().map(|item| std::mem::replace(item, Value::None)).collect();
        teardown(children);
    }
}

/// Move a container's contents into `work`, leaving it empty.
pub fn empty_into(container: &Value, work: &mut Vec<Value>) {
    match container {
        Value::List(items) | Value::Set(items) => work.append(&mut items.borrow_mut()),
        Value::Dict(entries) => {
            for (key, value) in std::mem::take(&mut *entries.borrow_mut()) {
                work.extend([key, value]);
            }
        }
        Value::Object(object) => {
            let mut object = object.borrow_mut();
            work.push(std::mem::replace(&mut object.callable, Value::None));
            work.push(std::mem::replace(&mut object.args, Value::None));
            work.extend(object.state.take());
            work.append(&mut object.items);
            for (key, value) in std::mem::take(&mut object.entries) {
                work.extend([key, value]);
            }
        }
        _ => {}
    }
}

/// Drop values without recursion: a hostile pickle can nest a million tuples, whose ordinary
/// (recursive) drop would overflow the stack. One loop per thread runs at a time; a drop that
/// happens inside it (a tuple's last holder) hands its items to it instead of starting another.
/// A value held elsewhere too is only released here; its last holder takes it apart.
pub fn teardown(work: Vec<Value>) {
    let running = PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        match pending.as_mut() {
            Some(queue) => {
                queue.extend(work);
                None
            }
            None => {
                *pending = Some(Vec::new());
                Some(work)
            }
        }
    });
    let Some(mut work) = running else { return };
    loop {
        let Some(value) = work.pop().or_else(|| PENDING.with(|pending| pending.borrow_mut().as_mut()?.pop())) else {
            break;
        };
        let mut children = Vec::new();
        match value {
            Value::List(ref shared) | Value::Set(ref shared) if Rc::strong_count(shared) == 1 => {
                empty_into(&value, &mut children)
            }
            Value::Dict(ref shared) if Rc::strong_count(shared) == 1 => empty_into(&value, &mut children),
            Value::Object(ref shared) if Rc::strong_count(shared) == 1 => empty_into(&value, &mut children),
            // A tuple's items come back through `Items::drop`, into PENDING.
            _ => {}
        }
        drop(value);
        work.append(&mut children);
    }
    PENDING.with(|pending| *pending.borrow_mut() = None);
}
