//! Dropping the pickle machine's values without recursion: a hostile pickle can nest a million
//! tuples, whose ordinary (recursive) drop would overflow the stack.

use std::rc::Rc;

use super::vm::Value;

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
/// (recursive) drop would overflow the stack. A value held elsewhere too is only released here;
/// its last holder takes it apart.
pub fn teardown(mut work: Vec<Value>) {
    while let Some(value) = work.pop() {
        match value {
            Value::Tuple(mut items) => {
                if let Some(items) = Rc::get_mut(&mut items) {
                    work.extend(items.iter_mut().map(|item| std::mem::replace(item, Value::None)));
                }
            }
            Value::List(ref shared) | Value::Set(ref shared) if Rc::strong_count(shared) == 1 => {
                empty_into(&value, &mut work)
            }
            Value::Dict(ref shared) if Rc::strong_count(shared) == 1 => empty_into(&value, &mut work),
            Value::Object(ref shared) if Rc::strong_count(shared) == 1 => empty_into(&value, &mut work),
            _ => {}
        }
    }
}
